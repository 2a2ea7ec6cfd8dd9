"""Node configs: the shipped ones load and work together, bad values get one clear line naming the
file and the key, relative paths resolve where docs/config.md says, and the router, agent config,
clock and quota the node builds carry the configured values."""

import datetime as dt
import os
from pathlib import Path

import pytest

from dtn.bundle import EID
from dtn.config import ConfigError, load_node_config
from dtn.config.node import DATA_DIR_ENV
from dtn.emulator.config import load_config
from dtn.ephemeris import earth_mars_light_time

CONFIGS = Path(__file__).parent.parent / "configs"
MINIMAL = """
[node]
id = "ipn:2.0"
[clock]
time_scale = 10
epoch = 1000
[[neighbour]]
name = "earth"
listen = "127.0.0.1:4557"
address = "127.0.0.1:4657"
[[route]]
pattern = "ipn:1.*"
via = ["earth"]
"""


def write(tmp_path: Path, text: str, name: str = "node.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def no_data_dir_env(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


@pytest.mark.parametrize("name", ["earth.toml", "mars.toml"])
def test_shipped_node_configs_load(name):
    config = load_node_config(CONFIGS / name)
    assert config.time_scale == 1000
    assert config.store_path == (CONFIGS / name.replace(".toml", ".db")).absolute()
    assert config.api_socket == (CONFIGS / name.replace(".toml", ".sock")).absolute()
    assert config.keyfile == (CONFIGS / "keys-example.toml").absolute()


def test_earth_and_mars_meet_through_the_ci_emulator():
    earth = load_node_config(CONFIGS / "earth.toml")
    mars = load_node_config(CONFIGS / "mars.toml")
    [link] = load_config(CONFIGS / "earth-mars-ci.toml").links
    assert link.a.name == "earth" and link.b.name == "mars"
    [to_mars], [to_earth] = earth.neighbours, mars.neighbours
    # each node listens where the emulator delivers to it and sends to the proxy socket that
    # listens for its side's traffic
    assert to_mars.listen == link.a.node and to_mars.address == link.a.listen
    assert to_earth.listen == link.b.node and to_earth.address == link.b.listen
    assert to_mars.address == ("127.0.0.1", 4656) and to_earth.address == ("127.0.0.1", 4657)
    assert float(to_mars.light_time) == link.a_to_b.delay == 1200
    assert to_mars.rate == link.a_to_b.rate and to_earth.rate == link.b_to_a.rate == 256_000
    assert (
        earth.time_scale
        == mars.time_scale
        == load_config(CONFIGS / "earth-mars-ci.toml").time_scale
    )
    assert to_mars.node_id == mars.node_id == "ipn:2.0"
    assert to_earth.node_id == earth.node_id == "ipn:1.0"
    assert earth.router(0).next_hop(EID.parse("ipn:2.7"), 0) == "mars"
    assert mars.router(0).next_hop(EID.parse("ipn:1.7"), 0) == "earth"
    assert mars.router(0).next_hop(EID.parse("ipn:3.1"), 0) is None


def test_shipped_security_encrypts_payloads_between_the_planets(tmp_path):
    earth = load_node_config(CONFIGS / "earth.toml")
    mars = load_node_config(CONFIGS / "mars.toml")
    to_mars = earth.security_policy().outbound(EID.parse("ipn:2.1"))
    from_earth = mars.security_policy().inbound(EID.parse("ipn:1.1"))
    assert to_mars is not None and from_earth is not None
    assert to_mars is from_earth or from_earth.describe() == to_mars.describe()
    assert to_mars.describe() == "BCB A256GCM" and to_mars.key == "mars-link"
    assert mars.security_policy().outbound(EID.parse("ipn:1.1")).describe() == "BCB A256GCM"
    assert earth.security_policy().outbound(EID.parse("ipn:3.1")) is None
    # the shipped demo key file is mode 644 in git; a copy at 600 loads and has the rule's key
    keys = tmp_path / "keys-example.toml"
    keys.write_bytes((CONFIGS / "keys-example.toml").read_bytes())
    keys.chmod(0o600)
    text = (CONFIGS / "earth.toml").read_text()
    config = load_node_config(write(tmp_path, text, "earth.toml"))
    assert config.keyfile == keys
    assert len(config.keyring().get("mars-link")) == 32


def test_a_key_file_open_to_others_is_a_config_error_at_load_of_keys(tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_bytes((CONFIGS / "keys-example.toml").read_bytes())
    keys.chmod(0o644)
    path = write(tmp_path, MINIMAL + '[security]\nkeyfile = "keys.toml"\n')
    with pytest.raises(ConfigError) as raised:
        load_node_config(path).keyring()
    assert str(path) in str(raised.value) and "chmod 600" in str(raised.value)


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "etc").mkdir()
    path = write(
        tmp_path / "etc", MINIMAL + '[store]\npath = "db/n.db"\n[api]\nsocket = "n.sock"\n'
    )
    config = load_node_config(path)
    assert config.store_path == tmp_path / "etc" / "db" / "n.db"
    assert config.api_socket == tmp_path / "etc" / "n.sock"


def test_data_dir_argument_and_env_move_store_and_socket_not_keyfile(tmp_path, monkeypatch):
    text = MINIMAL + '[store]\npath = "n.db"\n[security]\nkeyfile = "keys.toml"\n'
    path = write(tmp_path, text)
    config = load_node_config(path, data_dir=tmp_path / "data")
    assert config.store_path == tmp_path / "data" / "n.db"
    assert config.api_socket == tmp_path / "data" / "dtn.sock"
    assert config.keyfile == tmp_path / "keys.toml"
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert load_node_config(path).store_path == tmp_path / "env" / "n.db"
    assert load_node_config(path, data_dir=tmp_path / "arg").store_path == tmp_path / "arg" / "n.db"


def test_absolute_paths_stay(tmp_path):
    path = write(tmp_path, MINIMAL + '[store]\npath = "/var/lib/dtn/n.db"\n')
    assert load_node_config(path, data_dir=tmp_path).store_path == Path("/var/lib/dtn/n.db")


def test_agent_config_clock_and_quota_carry_the_values(tmp_path):
    text = MINIMAL.replace('id = "ipn:2.0"', 'id = "ipn:2.0"\nhas_clock = false') + (
        '[agent]\ncustody_margin = "2min"\nsignal_delay = "250ms"\ndefault_lifetime = "2d"\n'
        'max_bundle_size = "1MiB"\n[store]\nmax_bytes = "2GiB"\nmax_bundles = 500\n'
    )
    config = load_node_config(write(tmp_path, text))
    agent = config.agent_config()
    assert (agent.custody_margin, agent.signal_delay, agent.default_lifetime) == (
        120,
        0.25,
        172_800,
    )
    assert agent.max_bundle_size == 1 << 20 and agent.has_clock is False
    assert agent.admin_lifetime == 86_400  # default kept
    clock = config.clock()
    assert (clock.time_scale, clock.epoch) == (10, 1000)
    quota = config.quota()
    assert (quota.max_bytes, quota.max_bundles) == (2 << 30, 500)


def test_router_links_carry_rate_light_time_custody_and_fragment_size(tmp_path):
    text = MINIMAL.replace(
        'address = "127.0.0.1:4657"',
        'address = "127.0.0.1:4657"\nrate = "2 Mbit/s"\nlight_time = "12.5min"\ncustody = false\n'
        'max_bundle_size = "64KiB"',
    )
    router = load_node_config(write(tmp_path, text)).router(1000)
    link = router.link("earth", 1000)
    assert (link.owlt, link.rate_bps, link.custody, link.max_bundle_size) == (
        750.0,
        2_000_000.0,
        False,
        65_536,
    )
    assert router.next_hop(EID.parse("ipn:1.1"), 1000) == "earth"


def test_bundles_above_a_few_frames_are_fragmented_for_udp_rs_unless_turned_off(tmp_path):
    default = load_node_config(write(tmp_path, MINIMAL)).router(0).link("earth", 0)
    # 8192-byte frames of depth 4: 7136 content bytes, less the frame's and a record's headers
    assert default.fragment_above == 4 * (7136 - 8 - 18)
    (tmp_path / "off").mkdir()
    text = MINIMAL + "[fec]\nframe_size = 2048\nbundle_frames = 0\n"
    off = load_node_config(write(tmp_path / "off", text)).router(0).link("earth", 0)
    assert off.fragment_above is None


def test_auto_light_time_follows_the_ephemeris_at_the_reference_date(tmp_path):
    date = dt.datetime(2021, 10, 8, tzinfo=dt.UTC).timestamp()
    text = MINIMAL.replace(
        'address = "127.0.0.1:4657"',
        'address = "127.0.0.1:4657"\nlight_time = "auto"\nephemeris_date = 2021-10-08T00:00:00Z',
    )
    config = load_node_config(write(tmp_path, text))
    owlt = config.router(1000).link("earth", 1000).owlt
    assert abs(owlt - earth_mars_light_time(date)) < 0.5
    assert 21 * 60 < owlt < 23 * 60  # near the 2021 solar conjunction
    # a day of mission time later, the planets have moved with it
    later = config.router(1000 + 86_400).link("earth", 1000 + 86_400).owlt
    assert abs(later - earth_mars_light_time(date + 86_400)) < 0.5 and later != owlt


def test_auto_light_time_without_a_date_uses_mission_time(tmp_path):
    text = MINIMAL.replace("epoch = 1000", "epoch = 1700000000").replace(
        'address = "127.0.0.1:4657"', 'address = "127.0.0.1:4657"\nlight_time = "auto"'
    )
    owlt = load_node_config(write(tmp_path, text)).router(1_700_000_000).link("earth", 0).owlt
    assert abs(owlt - earth_mars_light_time(1_700_000_000)) < 0.5


def test_periodic_contacts_become_a_bounded_plan(tmp_path):
    write(
        tmp_path,
        '[passes]\nperiod = "1d"\nduration = "8h"\nfirst = 0\n'
        '[[outages]]\nstart = "2d"\nend = "4d"\n',
        "contacts.toml",
    )
    text = MINIMAL.replace(
        'address = "127.0.0.1:4657"',
        'address = "127.0.0.1:4657"\ncontacts = "contacts.toml"\ncontacts_horizon = "10d"',
    )
    router = load_node_config(write(tmp_path, text)).router(1000)
    plan = router.plan
    first = plan.current_or_next("earth", 1000)
    assert (first.start, first.end) == (1000, 1000 + 8 * 3600)
    assert not plan.is_up("earth", 1000 + 9 * 3600)
    second = plan.current_or_next("earth", 1000 + 9 * 3600)
    assert second.start == 1000 + 86_400
    # days 2 and 3 are an outage: the next pass after day 1 is day 4
    third = plan.current_or_next("earth", second.end)
    assert third.start == 1000 + 4 * 86_400
    # 10 days: passes on days 0, 1, 4..9, and nothing planned past the horizon
    assert plan.current_or_next("earth", 1000 + 10 * 86_400) is None
    # between passes the route still names earth: its next contact is the soonest
    assert router.next_hop(EID.parse("ipn:1.1"), 1000 + 9 * 3600) == "earth"


def test_default_horizon_covers_thirty_days_of_passes(tmp_path):
    text = MINIMAL.replace(
        'address = "127.0.0.1:4657"',
        'address = "127.0.0.1:4657"\ncontacts = { passes = { period = "1sol", duration = "8h" } }',
    )
    plan = load_node_config(write(tmp_path, text)).router(1000).plan
    assert plan.current_or_next("earth", 1000 + 29 * 86_400) is not None
    assert plan.current_or_next("earth", 1000 + 31 * 86_400) is None


def test_auto_light_time_per_contact_window(tmp_path):
    text = MINIMAL.replace("epoch = 1000", "epoch = 1633651200").replace(
        'address = "127.0.0.1:4657"',
        'address = "127.0.0.1:4657"\nlight_time = "auto"\n'
        'contacts = { windows = [{ start = "10d", end = "11d" }] }',
    )
    router = load_node_config(write(tmp_path, text)).router(1_633_651_200)
    start = 1_633_651_200 + 10 * 86_400
    assert abs(router.link("earth", start).owlt - earth_mars_light_time(start)) < 0.5


def test_an_unreadable_or_oversized_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_node_config(tmp_path / "missing.toml")
    big = write(tmp_path, "# " + "x" * (1 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        load_node_config(big)
    bad = write(tmp_path, "[node\n", "bad.toml")
    with pytest.raises(ConfigError) as raised:
        load_node_config(bad)
    assert str(raised.value).startswith(f"{bad}: not valid TOML") and "\n" not in str(raised.value)


def _set(text: str, table: str, line: str) -> str:
    """`text` with `line` added at the top of `[table]` (or `[[table]]`)."""
    for header in (f"[[{table}]]\n", f"[{table}]\n"):
        if header in text:
            return text.replace(header, header + line + "\n", 1)
    return text + f"[{table}]\n{line}\n"


@pytest.mark.parametrize(
    ("table", "line", "key", "expected"),
    [
        ("node", 'colour = "red"', "node.colour", "unknown key"),
        ("node", "has_clock = 1", "node.has_clock", "expected `bool`"),
        ("clock", "time_scale = 0", "clock.time_scale", "expected `float` > 0"),
        ("store", 'max_bytes = "lots"', "store.max_bytes", "expected a size"),
        ("store", "max_bundles = 0", "store", "max_bundles must be at least 1"),
        ("store", 'synchronous = "SOMETIMES"', "store.synchronous", "expected one of"),
        ("store", "path = 3", "store.path", "expected `str`"),
        ("api", 'mode = "rw"', "api.mode", "expected an octal mode"),
        ("api", 'max_message = "-1"', "api.max_message", "expected a size"),
        ("metrics", 'address = "localhost:80"', "metrics.address", "expected an IPv4 address"),
        ("log", 'format = "xml"', "log.format", "expected one of"),
        ("log", 'level = "loud"', "log.level", "expected one of"),
        ("agent", 'custody_margin = "soon"', "agent.custody_margin", "expected a duration"),
        ("agent", "signal_delay = -1", "agent.signal_delay", "cannot be negative"),
        ("agent", 'default_lifetime = "1 fortnight"', "agent.default_lifetime", "duration"),
        ("agent", "transmit_batch = 0", "agent", "transmit_batch must be at least 1"),
        ("agent", "crc = 1", "agent.crc", "unknown key"),
        ("fec", "frame_size = 10", "fec", "frame_size must be"),
        ("fec", "depth = 300", "fec", "depth must be"),
        ("fec", 'linger = "briefly"', "fec.linger", "expected a duration"),
        ("neighbour", 'name = "e a r t h"', "neighbour[0].name", "expected a name"),
        ("neighbour", 'node_id = "earth"', "neighbour[0].node_id", "expected a node ID"),
        ("neighbour", 'cla = "tcp"', "neighbour[0].cla", "expected one of"),
        (
            "neighbour",
            'rate = "fast"',
            "neighbour[0].rate",
            "expected a rate such as 256000 or \"256 kbit/s\", got 'fast'",
        ),
        ("neighbour", 'light_time = "far"', "neighbour[0].light_time", 'or "auto"'),
        ("neighbour", "ephemeris_date = 2021-10-08", "neighbour[0]", 'needs light_time = "auto"'),
        ("neighbour", "custody = 'yes'", "neighbour[0].custody", "expected `bool"),
        ("neighbour", 'max_bundle_size = "big"', "neighbour[0].max_bundle_size", "size"),
        ("neighbour", "contacts = { passes = { period = 1 } }", "neighbour[0].contacts", ""),
        ("neighbour", 'contacts_horizon = "ever"', "neighbour[0].contacts_horizon", "duration"),
        ("neighbour", "speed = 1", "neighbour[0].speed", "unknown key"),
        ("route", 'via = "earth"', "route[0].via", "expected `array`"),
        ("route", "pattern = 1", "route[0].pattern", "expected `str`"),
        ("route", "via = []", "route[0]", "via must name at least one neighbour"),
        ("security", "keyfile = 7", "security", "keyfile must be a path"),
    ],
)
def test_a_bad_value_names_the_file_and_the_key(tmp_path, table, line, key, expected):
    # replace a key of the same name in MINIMAL, else add it
    name = line.split("=")[0].strip()
    lines = MINIMAL.splitlines()
    if f"[{table}]" in MINIMAL:
        lines = [kept for kept in lines if not kept.startswith(f"{name} =")]
    text = _set("\n".join(lines) + "\n", table, line)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_node_config(path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert key in message and expected in message


def test_missing_node_id_and_listen_are_named(tmp_path):
    path = write(tmp_path, MINIMAL.replace('id = "ipn:2.0"\n', ""))
    with pytest.raises(ConfigError, match=r"missing key `node.id`"):
        load_node_config(path)
    path = write(tmp_path, MINIMAL.replace('listen = "127.0.0.1:4557"\n', ""))
    with pytest.raises(ConfigError, match=r"key `neighbour\[0\]`: udp-rs needs both listen"):
        load_node_config(path)


def test_routes_must_name_known_neighbours_and_names_are_unique(tmp_path):
    path = write(tmp_path, MINIMAL.replace('via = ["earth"]', 'via = ["venus"]'))
    with pytest.raises(ConfigError, match=r"route\[0\].via\[0\]`: expected a neighbour's name"):
        load_node_config(path)
    twice = MINIMAL + MINIMAL[MINIMAL.index("[[neighbour]]") : MINIMAL.index("[[route]]")]
    with pytest.raises(ConfigError, match=r"neighbour\[1\].name`: 'earth' is used twice"):
        load_node_config(write(tmp_path, twice))


def test_a_bad_contacts_file_names_the_neighbour_and_the_file(tmp_path):
    write(tmp_path, "[passes]\nperiod = 10\nduration = 20\n", "contacts.toml")
    text = MINIMAL.replace(
        'address = "127.0.0.1:4657"', 'address = "127.0.0.1:4657"\ncontacts = "contacts.toml"'
    )
    with pytest.raises(ConfigError) as raised:
        load_node_config(write(tmp_path, text))
    message = str(raised.value)
    assert "neighbour[0].contacts" in message and "contacts.toml" in message
    assert "duration <= period" in message and "\n" not in message


def test_epoch_defaults_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DTN_CLOCK_EPOCH", "12345")
    path = write(tmp_path, MINIMAL.replace("epoch = 1000\n", ""))
    assert load_node_config(path).clock().epoch == 12345
    assert os.environ["DTN_CLOCK_EPOCH"] == "12345"
