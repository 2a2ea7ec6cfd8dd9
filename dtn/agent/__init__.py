"""The bundle protocol agent: forwarding, delivery, expiry, fragmentation, custody transfer and
routing, sans-I/O (docs/agent.md, docs/custody.md)."""

from .actions import Action, Deliver, Event, Transmit
from .agent import ADMIN_PRIORITY, DATA_PRIORITY, Agent
from .config import AgentConfig
from .custody import CustodyBlock, CustodyReason, CustodySignal
from .fragment import FragmentError, fragment, reassemble
from .routing import Contact, ContactPlan, Link, Route, Router

__all__ = [
    "ADMIN_PRIORITY",
    "DATA_PRIORITY",
    "Action",
    "Agent",
    "AgentConfig",
    "Contact",
    "ContactPlan",
    "CustodyBlock",
    "CustodyReason",
    "CustodySignal",
    "Deliver",
    "Event",
    "FragmentError",
    "Link",
    "Route",
    "Router",
    "Transmit",
    "fragment",
    "reassemble",
]
