"""The link emulator: what an Earth–Mars link does to datagrams, between nodes on 127.0.0.1.

Sans-I/O core (no clock reads, no sockets, no asyncio):
  channel     ChannelDirection.submit(datagram, now) -> [(deliver_at, bytes)] | Drop(reason)
  biterrors   independent and Gilbert–Elliott bit flips
  contacts    contact windows, periodic passes, outages
  ephemeris   Earth–Mars light time from JPL's approximate Keplerian elements
  draws       batched random numbers
  inflight    datagrams waiting for delivery: RAM up to a cap, then a disk spool
  config      the TOML config; units: its quantities
Shell:
  proxy       the asyncio UDP proxy; metrics: Prometheus endpoint; stats: counters as text
  cli         `dtn emulate`

See docs/emulator.md.
"""
