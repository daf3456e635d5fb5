"""The delay-link fixture: it adds its delay, and what it adds itself stays small."""

from __future__ import annotations

import os

import pytest

from tests.delaylink import delay_link, measure_forwarder


@pytest.mark.netns
def test_link_adds_its_delay_and_little_else() -> None:
    with delay_link(0.020) as link:
        cost = measure_forwarder(link, count=30)
        assert link.host_if in os.listdir("/sys/class/net")
    assert cost.samples == 30
    # generous bounds: a busy 2-core machine can deschedule the forwarder now and then
    assert 0 <= cost.inbound_median < 0.002
    assert 0 <= cost.outbound_median < 0.002
    left = {link.host_if, link.ns.host_if} & set(os.listdir("/sys/class/net"))
    assert left == set()  # the root-side TUN and the veth are gone (the namespace took the rest)
    assert link.ns.name not in os.listdir("/var/run/netns")
