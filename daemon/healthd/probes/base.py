"""The probe seam: what a probe gets (`ProbeContext`), what probes share
(`ProbeResources`), and how a probe type declares itself (`ProbeSpec`).

A probe is `async def probe(check, ctx) -> ProbeOutcome` that raises
`ProbeFailure` when the target fails. The caller (the scheduler) owns the
time: it sets `ctx.deadline` and enforces it; a probe reads it (e.g. to stop
waiting a little early and still report what it saw) and never sets its own.

A probe type may also offer a fast path, `start(check, ctx, done) -> Started | None`,
for the scheduler: it begins the same probe with non-blocking calls and loop
callbacks (no task, no coroutine) and later calls `done(outcome)` or
`done(exception)` exactly once. It returns None when this run needs the coroutine
(e.g. a name to resolve); it may raise what the coroutine would raise at once. The
caller enforces the deadline by calling `Started.cancel()`, after which `done` is
never called. Its callbacks do a bounded amount of work each (a few system calls),
so no CPU budget meters them.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Protocol, TypeVar, cast

from healthd.config import CHECK_MODELS, CheckBase, CheckKey, format_check_id
from healthd.config.checks import type_name
from healthd.results import ProbeOutcome

log = logging.getLogger(__name__)

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class ProbeLog(logging.LoggerAdapter[logging.Logger]):
    """A probe's logger: every line names the check (`SERVICE/CHECK (TYPE TARGET): ...`)
    and carries `service`, `check` and `target` as record attributes for structured handlers."""

    def __init__(self, logger: logging.Logger, key: CheckKey, check: CheckBase) -> None:
        # the fields and the prefix are made per line logged, not kept: a worker has one of
        # these per check (~300 B each kept), and probes log rarely
        super().__init__(logger)
        self._key, self._check = key, check

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        key, check = self._key, self._check
        fields = {"service": key.service, "check": key.check, "target": check.display_target}
        kwargs["extra"] = {**fields, **kwargs.get("extra", {})}
        return f"{format_check_id(key)} ({check.type} {check.display_target}): {msg}", kwargs

    @classmethod
    def of(cls, key: CheckKey, check: CheckBase) -> ProbeLog:
        """The logger of `check`'s probes: `healthd.probes.TYPE`, the probe module's own."""
        return cls(logging.getLogger(f"healthd.probes.{check.type}"), key, check)


R = TypeVar("R", bound="SharedResource")


class SharedResource:
    """Something probes keep between runs (sockets, sessions, a pool, a self-test's verdict).

    Made by `ProbeResources.get` on first use, closed with the resources. A
    resource may use others through `self.resources.get(...)`.
    """

    def __init__(self, resources: ProbeResources) -> None:
        self.resources = resources

    async def prepare(self, checks: Sequence[CheckBase]) -> None:
        """At start, with the checks that use it: open now what the log should report at once."""
        del checks

    async def aclose(self) -> None:
        """At shutdown: release what it holds."""


class ProbeResources:
    """Everything probes share, owned by whoever runs them (the app, the one-shot CLI, a test).

    `async with ProbeResources() as resources:` - on exit each resource is closed,
    those made last (which may use earlier ones) first. Bound to the event loop
    it is used on.
    """

    def __init__(self) -> None:
        self._open: dict[type[SharedResource], SharedResource] = {}
        self._closed = False

    async def __aenter__(self) -> ProbeResources:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def get(self, kind: type[R]) -> R:
        """The one `kind` resource of these resources, made on first use."""
        found = self._open.get(kind)
        if found is None:
            if self._closed:
                raise RuntimeError(f"probe resources are closed: cannot open {kind.__name__}")
            found = kind(self)
            self._open[kind] = found
        return cast(R, found)

    async def prepare(self, specs: Iterable[ProbeSpec], checks: Iterable[CheckBase]) -> None:
        """Let each resource see the checks that will use it, before the first probe."""
        by_type: dict[str, list[CheckBase]] = {}
        for check in checks:
            by_type.setdefault(check.type, []).append(check)
        for spec in specs:
            if spec.resource is None or spec.type not in by_type:
                continue
            try:
                await self.get(spec.resource).prepare(by_type[spec.type])
            except Exception:  # the daemon starts anyway: the probes report what is wrong
                log.exception("preparing %s for the %s checks failed", spec.resource.__name__, spec.type)

    async def aclose(self) -> None:
        self._closed = True
        while self._open:
            kind, resource = self._open.popitem()  # the last made first
            try:
                await resource.aclose()
            except Exception:  # one resource that fails to close must not keep the others open
                log.exception("closing the probes' %s failed", kind.__name__)


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """What one probe run gets from its caller."""

    deadline: float  # on the event loop's clock (time.monotonic): the caller cancels the probe then
    log: ProbeLog  # names service, check and target
    resources: ProbeResources
    _progress: list[Callable[[], ProbeOutcome]] = field(default_factory=list)

    def report_progress(self, measure: Callable[[], ProbeOutcome]) -> None:
        """Tell the caller how to read what was measured so far, should the deadline cut
        the probe off (a timeout result then keeps the running phase's time)."""
        self._progress[:] = [measure]

    def progress(self) -> ProbeOutcome:
        """What the probe measured until now (empty unless it called `report_progress`)."""
        return self._progress[0]() if self._progress else ProbeOutcome()

    def remaining(self) -> float:
        """Seconds left until the deadline (negative once it has passed)."""
        return self.deadline - asyncio.get_running_loop().time()

    @classmethod
    def start(
        cls,
        check: CheckBase,
        resources: ProbeResources,
        key: CheckKey | None = None,
        log: ProbeLog | None = None,
    ) -> ProbeContext:
        """A context whose deadline is `check.timeout` from now (for callers outside the scheduler)."""
        key = key if key is not None else CheckKey("", check.name)
        deadline = asyncio.get_running_loop().time() + check.timeout
        return cls(deadline, log if log is not None else ProbeLog.of(key, check), resources)


Probe = Callable[[Any, ProbeContext], Awaitable[ProbeOutcome]]
Done = Callable[[ProbeOutcome | Exception], None]


class Started(Protocol):
    """A fast-path probe run in progress."""

    def cancel(self) -> ProbeOutcome | Exception:
        """Stop now (the deadline, or the check stopped): release what it holds, and return
        what it measured so far (the caller reports a timeout with it), or the failure it
        amounts to where the probe has its own verdict at the deadline (icmp: the requests
        lost); `done` is not called after this."""


Starter = Callable[[Any, ProbeContext, Done], Started | None]


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One probe type: everything the rest of the daemon needs to know of it."""

    type: str  # the `type:` in the config
    model: builtins.type[CheckBase]  # its config model (in healthd.config.checks)
    probe: Probe
    gauges: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # name -> HELP
    resource: builtins.type[SharedResource] | None = None  # what its probes share, if anything
    start: Starter | None = None  # the scheduler's fast path, where the type has one

    def __post_init__(self) -> None:
        object.__setattr__(self, "gauges", MappingProxyType(dict(self.gauges)))  # a spec is a constant
        problems = list(_problems(self))
        if problems:
            raise ValueError(f"probe spec {self.type!r}: " + "; ".join(problems))


def _problems(spec: ProbeSpec) -> Iterable[str]:
    if not isinstance(spec.model, type) or not issubclass(spec.model, CheckBase):
        yield "model must be a CheckBase subclass (its config model)"
    else:
        try:
            declared = type_name(spec.model)
        except TypeError as exc:
            yield str(exc)
        else:
            if declared != spec.type:
                yield f"model {spec.model.__name__} is for type {declared!r}"
    if not inspect.iscoroutinefunction(spec.probe):
        yield "probe must be an `async def probe(check, ctx)`"
    if spec.start is not None and (inspect.iscoroutinefunction(spec.start) or not callable(spec.start)):
        yield "start must be a plain function `start(check, ctx, done)`"
    for name in spec.gauges:
        if not _METRIC_NAME.match(name):
            yield f"gauge {name!r} is not a valid metric name"
    if spec.resource is not None and not (
        isinstance(spec.resource, type) and issubclass(spec.resource, SharedResource)
    ):
        yield "resource must be a SharedResource subclass"


@dataclass(frozen=True, slots=True)
class Registry:
    """The probe types in use: dispatch table and gauge help, derived from one list of specs."""

    specs: Mapping[str, ProbeSpec]
    probes: Mapping[str, Probe]
    gauge_help: Mapping[str, str]
    starters: Mapping[str, Starter] = field(default_factory=lambda: MappingProxyType({}))


def register(specs: Sequence[ProbeSpec], models: Mapping[str, type[CheckBase]] = CHECK_MODELS) -> Registry:
    """Join the specs; refuse a duplicate type, or a config model without its probe (and back)."""
    by_type: dict[str, ProbeSpec] = {}
    for spec in specs:
        if not isinstance(spec, ProbeSpec):
            raise ValueError(f"not a ProbeSpec: {spec!r}")
        if spec.type in by_type:
            raise ValueError(f"probe type {spec.type!r} is registered twice")
        if models.get(spec.type) is not spec.model:
            raise ValueError(f"probe type {spec.type!r}: its model is not in healthd.config.MODELS")
        by_type[spec.type] = spec
    missing = sorted(set(models) - set(by_type))
    if missing:
        raise ValueError(f"config check types without a probe: {', '.join(missing)}")
    gauges: dict[str, str] = {}
    for spec in specs:
        for name, help_text in spec.gauges.items():
            if gauges.setdefault(name, help_text) != help_text:
                raise ValueError(f"gauge {name!r} has two HELP texts")
    return Registry(
        specs=MappingProxyType(by_type),
        probes=MappingProxyType({name: spec.probe for name, spec in by_type.items()}),
        gauge_help=MappingProxyType(gauges),
        starters=MappingProxyType({name: spec.start for name, spec in by_type.items() if spec.start}),
    )
