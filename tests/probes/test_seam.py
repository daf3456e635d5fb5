"""The probe seam: one spec per probe type, registries that agree, no module state, the context."""

from __future__ import annotations
import __future__

import asyncio
import dataclasses
import errno
import importlib
import logging
import pkgutil
import re
import struct
import types
import typing
from collections.abc import Iterator
from contextvars import ContextVar
from enum import Enum
from typing import Any, Literal

import healthd.probes
import pytest
from healthd.config import CHECK_MODELS, MODELS, CheckKey, TcpCheck
from healthd.config.checks.base import HostPortCheck
from healthd.errors import ProbeFailure, from_os_error
from healthd.probes import GAUGE_HELP, PROBES, REGISTRY, SPECS, ProbeContext, ProbeResources, ProbeSpec
from healthd.probes.base import ProbeLog, SharedResource, register
from healthd.results import ErrorKind, ProbeOutcome
from healthd.scheduler import run_probe


async def nothing(check: Any, ctx: ProbeContext) -> ProbeOutcome:
    return ProbeOutcome()


class PingCheck(HostPortCheck):
    """A model of a type the config does not know."""

    type: Literal["ping"]


# ---- one list of specs, registries derived from it --------------------------------------


def test_every_config_model_has_exactly_one_spec_and_probe() -> None:
    assert [spec.type for spec in SPECS] == list(CHECK_MODELS)
    for spec in SPECS:
        assert CHECK_MODELS[spec.type] is spec.model
        assert PROBES[spec.type] is spec.probe
        assert REGISTRY.specs[spec.type] is spec
    assert set(MODELS) == {spec.model for spec in SPECS}
    assert dict(GAUGE_HELP) == {name: text for spec in SPECS for name, text in spec.gauges.items()}


def test_each_probe_module_declares_its_spec() -> None:
    for spec in SPECS:
        module = importlib.import_module(spec.probe.__module__)
        assert module.SPEC is spec, spec.probe.__module__
        assert spec.probe.__module__ == f"healthd.probes.{spec.type}"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"model": None}, "model must be a CheckBase subclass"),
        ({"model": PingCheck}, "model PingCheck is for type 'ping'"),
        ({"probe": None}, "probe must be an `async def probe(check, ctx)`"),
        ({"probe": lambda check, ctx: ProbeOutcome()}, "probe must be an `async def probe(check, ctx)`"),
        ({"gauges": {"bad name": "help"}}, "gauge 'bad name' is not a valid metric name"),
        ({"resource": dict}, "resource must be a SharedResource subclass"),
    ],
)
def test_a_spec_without_a_model_or_probe_cannot_be_made(options: dict[str, Any], reason: str) -> None:
    fields: dict[str, Any] = {"type": "tcp", "model": TcpCheck, "probe": nothing, **options}
    with pytest.raises(ValueError, match="probe spec 'tcp': ") as caught:
        ProbeSpec(**fields)
    assert reason in str(caught.value)


def test_register_refuses_what_does_not_match_the_config() -> None:
    ok = ProbeSpec(type="tcp", model=TcpCheck, probe=nothing)
    assert register([ok], {"tcp": TcpCheck}).probes == {"tcp": nothing}
    with pytest.raises(ValueError, match="config check types without a probe: syn"):
        register([ok], {"tcp": TcpCheck, "syn": CHECK_MODELS["syn"]})
    with pytest.raises(ValueError, match="registered twice"):
        register([ok, ok], {"tcp": TcpCheck})
    with pytest.raises(ValueError, match=r"its model is not in healthd\.config\.MODELS"):
        register([ProbeSpec(type="ping", model=PingCheck, probe=nothing)], {"tcp": TcpCheck})
    with pytest.raises(ValueError, match="not a ProbeSpec"):
        register([nothing], {"tcp": TcpCheck})  # type: ignore[list-item]
    clash = ProbeSpec(type="tcp", model=TcpCheck, probe=nothing, gauges={"g": "one"})
    other = ProbeSpec(type="ping", model=PingCheck, probe=nothing, gauges={"g": "two"})
    with pytest.raises(ValueError, match="gauge 'g' has two HELP texts"):
        register([clash, other], {"tcp": TcpCheck, "ping": PingCheck})


def test_the_tables_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        PROBES["tcp"] = nothing  # type: ignore[index]
    with pytest.raises(TypeError):
        CHECK_MODELS["tcp"] = TcpCheck  # type: ignore[index]
    with pytest.raises(TypeError):
        SPECS[0].gauges["x"] = "y"  # type: ignore[index]


# ---- no module-level mutable state in healthd.probes -------------------------------------

# values a module may hold at top level: they cannot change, or hold no state of their own
_CONSTANT = (str, bytes, int, float, bool, type(None), frozenset, range, Enum, re.Pattern, struct.Struct)
_DEFINITIONS = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, logging.Logger)
_TYPING = (
    __future__._Feature,
    types.GenericAlias,
    types.UnionType,
    typing.TypeVar,
    type(typing.Callable[[], None]),
)
# a per-task slot (each probe sees only its own), not state shared between probes
_PER_TASK = (ContextVar,)


def _probe_modules() -> Iterator[types.ModuleType]:
    yield healthd.probes
    for info in pkgutil.iter_modules(healthd.probes.__path__, "healthd.probes."):
        yield importlib.import_module(info.name)


def _is_constant(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_is_constant(item) for item in value)
    if isinstance(value, types.MappingProxyType):
        return all(_is_constant(item) for item in value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # frozen, and so are their fields (specs and registry hold read-only mappings)
        fields = (getattr(value, field.name) for field in dataclasses.fields(value))
        return value.__dataclass_params__.frozen and all(_is_constant(v) or callable(v) for v in fields)  # type: ignore[attr-defined]
    return isinstance(value, _CONSTANT + _DEFINITIONS + _TYPING + _PER_TASK) or _is_pure_cache(value)


def _is_pure_cache(value: object) -> bool:
    # memoized pure functions over immutable values (address parsing, payload bytes): what
    # they keep is the same in every run and every test, so nothing needs a reset
    return (
        callable(value) and hasattr(value, "cache_info") and getattr(value, "__wrapped__", None) is not None
    )


def test_no_module_level_mutable_state_in_the_probes_package() -> None:
    found = [
        f"{module.__name__}.{name}: {type(value).__name__}"
        for module in _probe_modules()
        for name, value in vars(module).items()
        if not name.startswith("__") and not _is_constant(value)
    ]
    assert found == []


def test_the_package_lists_every_probe_module() -> None:
    modules = {info.name for info in pkgutil.iter_modules(healthd.probes.__path__)}
    probes = {name for name in modules if not name.startswith("_") and name != "base"}
    assert probes == {spec.type for spec in SPECS}


# ---- resources ---------------------------------------------------------------------------


class Counter(SharedResource):
    closed: list[str] = []

    async def aclose(self) -> None:
        self.closed.append(type(self).__name__)


class Dependent(Counter):
    def __init__(self, resources: ProbeResources) -> None:
        super().__init__(resources)
        self.base = resources.get(Counter)


async def test_resources_are_made_once_and_closed_dependents_first() -> None:
    Counter.closed = []
    async with ProbeResources() as resources:
        dependent = resources.get(Dependent)
        assert resources.get(Dependent) is dependent
        assert resources.get(Counter) is dependent.base
    assert Counter.closed == ["Dependent", "Counter"]
    with pytest.raises(RuntimeError, match="probe resources are closed"):
        resources.get(Counter)


class Broken(SharedResource):
    async def prepare(self, checks: Any) -> None:
        raise OSError(errno.EMFILE, "Too many open files")


async def test_a_resource_that_cannot_prepare_is_logged_and_the_start_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = ProbeSpec(type="tcp", model=TcpCheck, probe=nothing, resource=Broken)
    check = TcpCheck.model_validate({"type": "tcp", "name": "x", "target": "127.0.0.1:1"})
    async with ProbeResources() as resources:
        await resources.prepare([spec], [check])
    assert "preparing Broken for the tcp checks failed" in caplog.text
    assert "Too many open files" in caplog.text  # with its traceback


async def test_each_owner_gets_its_own_resources() -> None:
    async with ProbeResources() as first, ProbeResources() as second:
        assert first.get(Counter) is not second.get(Counter)


# ---- the context and the one failure type ------------------------------------------------


async def test_probe_sees_the_callers_deadline_and_a_logger_naming_the_check(
    resources: ProbeResources, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[float] = []

    async def looks(check: Any, ctx: ProbeContext) -> ProbeOutcome:
        seen.append(ctx.remaining())
        ctx.log.warning("looked")
        return ProbeOutcome()

    check = TcpCheck.model_validate(
        {"type": "tcp", "name": "db", "target": "127.0.0.1:5432", "timeout": "3s"}
    )
    key = CheckKey("shop", "db")
    with caplog.at_level(logging.INFO, logger="healthd.probes.tcp"):
        result = await run_probe(looks, check, resources, key=key, log=ProbeLog.of(key, check))
    assert result.ok
    assert 2.5 < seen[0] <= 3.0
    record = next(r for r in caplog.records if "looked" in r.getMessage())
    assert record.getMessage() == "shop/db (tcp 127.0.0.1:5432): looked"
    assert (record.service, record.check, record.target) == ("shop", "db", "127.0.0.1:5432")  # type: ignore[attr-defined]


async def test_a_failure_carries_what_was_measured(resources: ProbeResources) -> None:
    async def half(check: Any, ctx: ProbeContext) -> ProbeOutcome:
        measured = ProbeOutcome(
            phases={"connect": 0.002}, details={"status": 503}, gauges={"g": 1.0}, latency=0.002
        )
        raise ProbeFailure(ErrorKind.HTTP_STATUS, "status 503", measured)

    check = TcpCheck.model_validate({"type": "tcp", "name": "x", "target": "127.0.0.1:1"})
    result = await run_probe(half, check, resources)
    assert (result.ok, result.error_kind, result.error_message) == (
        False,
        ErrorKind.HTTP_STATUS,
        "status 503",
    )
    assert (result.phases, result.details, result.gauges, result.latency) == (
        {"connect": 0.002},
        {"status": 503},
        {"g": 1.0},
        0.002,
    )


@pytest.mark.parametrize(
    ("number", "kind"),
    [
        (errno.ECONNREFUSED, ErrorKind.REFUSED),
        (errno.EHOSTUNREACH, ErrorKind.UNREACHABLE),
        (errno.ENETUNREACH, ErrorKind.UNREACHABLE),
        (errno.ETIMEDOUT, ErrorKind.TIMEOUT),
        (errno.EACCES, ErrorKind.PERMISSION),
        (errno.EPERM, ErrorKind.PERMISSION),
        (errno.EBADF, ErrorKind.ERROR),
    ],
)
def test_os_errors_become_one_failure_type_with_the_right_kind(number: int, kind: ErrorKind) -> None:
    failure = from_os_error(OSError(number, "ignored"), "connect to 127.0.0.1:1")
    assert type(failure) is ProbeFailure
    assert failure.kind is kind
    assert failure.message.startswith("connect to 127.0.0.1:1: ")


async def test_failures_chain_their_cause(resources: ProbeResources, closed_port: int) -> None:
    check = TcpCheck.model_validate({"type": "tcp", "name": "x", "target": f"127.0.0.1:{closed_port}"})
    with pytest.raises(ProbeFailure) as caught:
        await PROBES["tcp"](check, ProbeContext.start(check, resources))
    assert caught.value.kind is ErrorKind.REFUSED
    assert isinstance(caught.value.__cause__, OSError)  # the traceback shows what happened


async def test_a_probe_never_runs_past_the_callers_deadline(resources: ProbeResources) -> None:
    async def ignores_it(check: Any, ctx: ProbeContext) -> ProbeOutcome:
        await asyncio.sleep(10)
        return ProbeOutcome()

    check = TcpCheck.model_validate(
        {"type": "tcp", "name": "x", "target": "127.0.0.1:1", "timeout": "50ms", "interval": "1s"}
    )
    result = await run_probe(ignores_it, check, resources)
    assert result.error_kind is ErrorKind.TIMEOUT
