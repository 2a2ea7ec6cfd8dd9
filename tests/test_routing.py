"""Static routes by EID pattern, the contact plan, and the agent waiting for contacts."""

from __future__ import annotations

import pytest
from test_agent_harness import T0, VirtualNet

from dtn.agent import Contact, ContactPlan, Link, Route, Router
from dtn.bundle import EID

PLAN = ContactPlan(
    [
        Contact("mars", 100, 200, rate_bps=1000, owlt=600),
        Contact("mars", 500, 700, owlt=900),
        Contact("moon", 150, 160),
        Contact("moon", 300, 310),
    ]
)


def test_contact_plan_windows():
    assert PLAN.current_or_next("mars", 0).start == 100
    assert PLAN.current_or_next("mars", 150).start == 100
    assert PLAN.current_or_next("mars", 200).start == 500  # a window's end is exclusive
    assert PLAN.current_or_next("mars", 700) is None
    assert PLAN.is_up("mars", 150) and not PLAN.is_up("mars", 300)
    assert PLAN.current_or_next("venus", 0) is None


def test_contact_plan_transitions_for_the_shell():
    edges = []
    now = 0
    while (edge := PLAN.next_transition(now)) is not None:
        edges.append(edge)
        now = edge[0]
    assert edges == [
        (100, "mars", True),
        (150, "moon", True),
        (160, "moon", False),
        (200, "mars", False),
        (300, "moon", True),
        (310, "moon", False),
        (500, "mars", True),
        (700, "mars", False),
    ]


def test_contact_plan_rejects_nonsense():
    with pytest.raises(ValueError, match="overlap"):
        ContactPlan([Contact("x", 0, 10), Contact("x", 5, 20)])
    with pytest.raises(ValueError, match="ends"):
        Contact("x", 10, 10)


def test_router_first_matching_pattern_and_soonest_contact():
    router = Router(
        [Route("ipn:4.*", ("moon",)), Route("ipn:*", ("mars", "moon"))],
        [Link("mars", owlt=700, max_bundle_size=9000)],
        PLAN,
    )
    assert router.next_hop(EID.parse("ipn:4.1"), 0) == "moon"
    assert router.next_hop(EID.parse("ipn:9.1"), 0) == "mars"  # opens at 100, moon at 150
    assert router.next_hop(EID.parse("ipn:9.1"), 205) == "moon"  # at 300, mars at 500
    assert router.next_hop(EID.parse("ipn:9.1"), 400) == "mars"  # moon has no window left
    assert router.next_hop(EID.parse("ipn:4.1"), 400) is None
    assert router.next_hop(EID.parse("dtn://elsewhere/x"), 0) is None


def test_router_link_parameters_come_from_the_window():
    router = Router([], [Link("mars", owlt=700, rate_bps=64, max_bundle_size=9000)], PLAN)
    assert router.link("mars", 150) == Link("mars", owlt=600, rate_bps=1000, max_bundle_size=9000)
    assert router.link("mars", 300) == Link("mars", owlt=900, rate_bps=64, max_bundle_size=9000)
    assert router.link("mars", 800) == Link("mars", owlt=700, rate_bps=64, max_bundle_size=9000)
    assert router.link("pluto", 0) == Link("pluto")


def test_unplanned_neighbour_is_available_any_time():
    router = Router([Route("dtn://*", ("relay", "mars"))], [], PLAN)
    assert router.next_hop(EID.parse("dtn://x/y"), 0) == "relay"


def test_bundles_follow_the_plan_through_the_agent(tmp_path):
    """Earth reaches two Mars nodes via whichever relay's window comes first."""
    plan = ContactPlan(
        [Contact("relay1", T0 + 1000, T0 + 2000), Contact("relay2", T0 + 500, T0 + 600)]
    )
    net = VirtualNet(tmp_path, T0)
    net.add_node(
        "earth",
        1,
        [Route("ipn:*", ("relay1", "relay2"))],
        [Link("relay1", owlt=60.0), Link("relay2", owlt=60.0)],
    )
    net.nodes["earth"].router.plan = plan
    for name, number in (("relay1", 2), ("relay2", 3)):
        net.add_node(name, number, [Route("ipn:1.*", ("earth",))], [Link("earth", owlt=60.0)])
    earth = net.nodes["earth"]
    earth.agent.submit(b"early", "ipn:2.1", net.now)  # relay2's window comes first
    net.run_until(T0 + 500)
    net.contact("earth", "relay2", True)
    net.run_until(T0 + 600)
    net.contact("earth", "relay2", False)
    earth.agent.submit(b"late", "ipn:2.1", net.now)  # relay2 has no window left: relay1
    net.run_until(T0 + 1000)
    net.contact("earth", "relay1", True)
    net.run_until(T0 + 1100)
    assert [d.payload for d in net.nodes["relay1"].delivered] == [b"late"]
    assert [(t - T0, dst) for t, src, dst, _ in net.sent if src == "earth"] == [
        (500, "relay2"),
        (1000, "relay1"),
    ]
