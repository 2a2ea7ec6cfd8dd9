"""dtn: a delay-tolerant networking stack for Earth-Mars links (BPv7, BPSec, RS framing)."""

__version__ = "0.1.0"

_CLIENT_NAMES = frozenset({"Client", "AsyncClient", "Received", "ApiError"})


def __getattr__(name: str) -> object:
    # lazy, so `import dtn` stays cheap for code that never talks to a node
    if name in _CLIENT_NAMES:
        from dtn import client

        return getattr(client, name)
    raise AttributeError(f"module 'dtn' has no attribute {name!r}")
