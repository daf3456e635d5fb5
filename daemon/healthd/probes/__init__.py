"""Probes: one module per check type, each declaring one `SPEC`, joined here in `SPECS`.

A probe module (read `tcp.py` first) has:

- `async def probe_X(check, ctx: ProbeContext) -> ProbeOutcome`: on success the
  outcome (phases, details, gauges, latency); on failure it raises
  `ProbeFailure(kind, message, outcome)` chained to the cause. OS errors go
  through `healthd.errors.from_os_error`. The caller applies the deadline
  (`ctx.deadline`), measures the total and turns any exception into a result.
- shared state (sockets, sessions, a pool) only in a `SharedResource` it gets
  with `ctx.resources.get(Kind)`: never in module globals.
- `SPEC = ProbeSpec(type, model, probe, gauges, resource)`.

Adding a probe type: its config model in `healthd.config.checks` (one entry in
`MODELS`), its module here, one line in `SPECS`. `register` refuses a spec
without a model or probe, and a model without its probe.
"""

from __future__ import annotations

from healthd.probes import http, icmp, syn, tcp
from healthd.probes.base import (
    Probe,
    ProbeContext,
    ProbeLog,
    ProbeResources,
    ProbeSpec,
    Registry,
    SharedResource,
    Started,
    Starter,
    register,
)

SPECS: tuple[ProbeSpec, ...] = (tcp.SPEC, syn.SPEC, icmp.SPEC, http.SPEC)

REGISTRY: Registry = register(SPECS)
#: type -> probe coroutine: the scheduler's dispatch table
PROBES = REGISTRY.probes
#: type -> fast-path starter, for the types that have one (see `ProbeSpec.start`)
STARTERS = REGISTRY.starters
#: HELP texts of the type-specific gauges probes report in `ProbeOutcome.gauges`
GAUGE_HELP = REGISTRY.gauge_help

__all__ = [
    "GAUGE_HELP",
    "PROBES",
    "REGISTRY",
    "SPECS",
    "STARTERS",
    "Probe",
    "ProbeContext",
    "ProbeLog",
    "ProbeResources",
    "ProbeSpec",
    "Registry",
    "SharedResource",
    "Started",
    "Starter",
    "register",
]
