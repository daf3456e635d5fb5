"""Multi-WAN on the wire: each bound probe leaves through the uplink it names, IPv4 and IPv6.

In the two-uplink lab (tests/wanlab.py) every probe type runs bound by `interface`,
by `source_ip` (with the router's `from` rules), and unbound; a capture on each ISP's
end of the link shows which uplink its packets took. Set HEALTHD_WIRE_LOG=FILE to
collect the captured lines (the evidence quoted in reports).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from healthd.config import CHECK_MODELS, CheckBase
from healthd.probes import PROBES, ProbeResources
from healthd.results import ErrorKind, ProbeResult
from healthd.scheduler import run_probe

from tests.capture import ACK, RST, SYN, Packet
from tests.wanlab import HTTP_PORT, Uplink, WanLab, wan_lab

BINDINGS = ("interface wan1", "interface wan2", "source_ip wan1", "source_ip wan2", "unbound")
#: the ICMP socket modes, chosen by the host's ping_group_range (root: raw unless admitted)
PING_GROUPS = {"datagram": "0 2147483647", "raw": "1 0"}


@pytest.fixture(scope="module")
def lab() -> Iterator[WanLab]:
    with wan_lab() as built:
        yield built


@pytest.fixture(autouse=True)
def healthy(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts and ends with both uplinks up and the policy rules in place."""
    yield
    if "lab" in request.fixturenames:
        found: WanLab = request.getfixturevalue("lab")
        for uplink in found.uplinks():
            found.restore(uplink)
        found.restore_policy()


def make_check(kind: str, lab: WanLab, version: int, name: str = "web", **options: Any) -> CheckBase:
    address = lab.target(name, version)  # type: ignore[arg-type]
    literal = f"[{address}]" if version == 6 else address
    target = {
        "tcp": {"target": f"{literal}:{HTTP_PORT}"},
        "syn": {"target": f"{literal}:{HTTP_PORT}"},
        "icmp": {"target": address},
        "http": {"url": f"http://{literal}:{HTTP_PORT}/"},
    }[kind]
    spec = {"type": kind, "name": f"{kind}{version}", "timeout": "1s", **target, **options}
    return CHECK_MODELS[kind].model_validate(spec)


def binding(lab: WanLab, how: str, version: int) -> tuple[dict[str, Any], Uplink]:
    """The check options of a binding, and the uplink its packets must take."""
    if how == "unbound":
        return {}, lab.wan1  # the main table's default
    option, name = how.split()
    uplink = lab.wan1 if name == "wan1" else lab.wan2
    return ({"interface": name} if option == "interface" else {"source_ip": uplink.ip(version, 2)}), uplink


def probe_in_host(lab: WanLab, check: CheckBase) -> ProbeResult:
    async def once() -> ProbeResult:
        async with ProbeResources() as resources:
            return await run_probe(PROBES[check.type], check, resources)

    return lab.run(once)


def toward(lab: WanLab, version: int) -> set[str]:
    return {lab.target(name, version) for name in ("web", "filtered", "other")}  # type: ignore[arg-type]


def wire_log(title: str, packets: list[Packet]) -> None:
    path = os.environ.get("HEALTHD_WIRE_LOG")
    if path:
        with open(path, "a") as out:
            out.write(f"{title}\n" + "".join(f"    {p.summary()}\n" for p in packets))


def probe_on_wire(lab: WanLab, check: CheckBase, version: int) -> tuple[ProbeResult, dict[str, list[Packet]]]:
    """Run `check` in the host while both ISP links are captured; the host's packets to the targets per link."""
    targets = toward(lab, version)

    def keep(packet: Packet) -> bool:
        return packet.dst in targets and not packet.outgoing

    with lab.wan1.capture(keep=keep) as one, lab.wan2.capture(keep=keep) as two:
        result = probe_in_host(lab, check)
        # the probe has returned, so its packets are on the wire; let the capture threads read them
        one.wait_for(lambda p: False, timeout=0.2)
    # only connections this probe opened: the last FIN/ACK of the previous probe's may still be on the way
    opened = {(p.src, p.sport) for p in one.packets + two.packets if p.is_tcp and p.flags == SYN}

    def ours(packets: list[Packet]) -> list[Packet]:
        return [p for p in packets if not p.is_tcp or (p.src, p.sport) in opened]

    return result, {"wan1": ours(one.packets), "wan2": ours(two.packets)}


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("kind", ["tcp", "syn", "icmp-datagram", "icmp-raw", "http"])
def test_each_binding_leaves_through_its_uplink(lab: WanLab, kind: str, version: int) -> None:
    kind, _, mode = kind.partition("-")
    if mode:
        lab.host.sysctl("net.ipv4.ping_group_range", PING_GROUPS[mode])
    for how in BINDINGS:
        options, uplink = binding(lab, how, version)
        check = make_check(kind, lab, version, **options)
        result, seen = probe_on_wire(lab, check, version)
        wire_log(
            f"{kind}{'/' + mode if mode else ''} IPv{version} {how}: on {uplink.name}", seen[uplink.name]
        )
        assert result.ok, f"{how}: {result.error_kind}: {result.error_message}"
        if mode:
            assert result.details["mode"] == mode
        other = "wan2" if uplink.name == "wan1" else "wan1"
        assert seen[other] == [], f"{how} leaked onto {other}: {[p.summary() for p in seen[other]]}"
        assert_exchange(kind, seen[uplink.name], uplink.ip(version, 2), how)


def assert_exchange(kind: str, packets: list[Packet], source: str, how: str) -> None:
    """What the probe type puts on the wire, all from the uplink's own address."""
    summaries = [p.summary() for p in packets]
    assert packets and all(p.src == source for p in packets), f"{how}: {summaries}"
    if kind == "icmp":
        assert [p.icmp_type for p in packets] == [8 if ":" not in source else 128], summaries
        return
    flags = [p.flags or 0 for p in packets]
    assert flags[0] == SYN, summaries
    if kind == "syn":  # half open: SYN, then our RST; never the ACK that completes the handshake
        assert len(packets) == 2 and flags[1] & RST, summaries
    else:
        assert any(f & ACK and not f & (SYN | RST) for f in flags), summaries  # the handshake completed
    if kind == "http":
        assert any(p.payload.startswith(b"GET / HTTP/1.1") for p in packets), summaries


@pytest.mark.parametrize("version", [4, 6])
def test_a_missing_policy_rule_never_leaks_through_the_other_uplink(lab: WanLab, version: int) -> None:
    """wan2's rules gone: `source_ip` alone leaves through the main table's wan1 (why the docs say
    to give `interface` too); with `interface` also given the probe fails and nothing reaches wan1."""
    lab.remove_policy(lab.wan2)
    source = lab.wan2.ip(version, 2)
    for kind in ("tcp", "syn", "icmp", "http"):
        pinned = make_check(kind, lab, version, interface="wan2", source_ip=source, timeout="500ms")
        result, seen = probe_on_wire(lab, pinned, version)
        wire_log(f"{kind} IPv{version} interface+source_ip wan2 without its rules: on wan1", seen["wan1"])
        assert not result.ok and seen["wan1"] == [], (result.error_message, seen)
        loose = make_check(kind, lab, version, source_ip=source, timeout="500ms")
        _, seen = probe_on_wire(lab, loose, version)
        assert seen["wan1"] and all(p.src == source for p in seen["wan1"]), seen


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("how", ["interface wan2", "source_ip wan2"])
def test_a_redirect_to_another_host_keeps_the_uplink(lab: WanLab, how: str, version: int) -> None:
    options, uplink = binding(lab, how, version)
    hop = make_check("http", lab, version, **options, follow_redirects=True, redirect_policy="any")
    hop = hop.model_copy(update={"url": f"{hop.url}hop"})  # type: ignore[attr-defined]
    lab.requests.clear()
    result, seen = probe_on_wire(lab, hop, version)
    wire_log(f"http IPv{version} {how} redirect /hop -> other: on wan2", seen["wan2"])
    assert result.ok, result.error_message
    assert seen["wan1"] == []
    web, other = lab.target("web", version), lab.target("other", version)
    assert {p.dst for p in seen["wan2"] if p.flags == SYN} == {web, other}
    source = uplink.ip(version, 2)
    assert lab.requests == [(source, web, "/hop"), (source, other, "/")]


@pytest.mark.parametrize("version", [4, 6])
def test_a_host_that_drops_icmp_is_up_for_tcp_and_syn_through_each_uplink(lab: WanLab, version: int) -> None:
    for how in ("interface wan1", "interface wan2"):
        options, _ = binding(lab, how, version)
        verdicts = {
            kind: probe_in_host(lab, make_check(kind, lab, version, "filtered", **options, timeout="500ms"))
            for kind in ("tcp", "syn", "icmp")
        }
        assert verdicts["tcp"].ok and verdicts["syn"].ok, verdicts
        assert verdicts["icmp"].error_kind is ErrorKind.TIMEOUT, verdicts["icmp"]
