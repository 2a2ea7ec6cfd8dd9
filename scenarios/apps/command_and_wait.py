"""An operator's own program, as a scenario's [[app]] runs it beside the Earth node: send one
command to the Mars rover asking for a delivery report, and exit 0 once the report comes back
(two light times later), 1 if it does not within a minute of wall time.

The scenario runner sets $DTN_API_SOCKET to the node's socket, so `Client()` finds the node.
"""

import sys

from dtn import Client

with Client() as node:
    bundle_id = node.send("ipn:2.1", b'{"cmd": "take-image", "camera": "mastcam"}',
                          report=True, watch=True)
    print(f"sent {bundle_id}", flush=True)
    while (event := node.events(timeout=60)) is not None:
        print(f"{event.event} {event.detail}", flush=True)
        if event.event == "delivered":
            sys.exit(0)
sys.exit(1)
