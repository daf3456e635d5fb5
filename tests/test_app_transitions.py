"""A check's transition derives only its own service's status (not every service's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from healthd.app import DAEMON, create_app
from healthd.config import load_config
from healthd.results import ErrorKind, ProbeResult
from healthd.store import Status, Store, Transition


def _config(tmp_path: Path, services: int) -> Path:
    body = "".join(
        f"  - name: s{n}\n    checks:\n      - {{name: tcp, type: tcp, target: '127.0.0.1:9'}}\n"
        for n in range(services)
    )
    path = tmp_path / "config.yaml"
    path.write_text(f"server: {{listen: '127.0.0.1:0'}}\nservices:\n{body}")
    return path


async def test_a_transition_looks_at_its_own_service_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = create_app(load_config(_config(tmp_path, 50)))[DAEMON]
    asked: list[str] = []
    status_of = Store.status_of

    def counting(store: Store, service):  # type: ignore[no-untyped-def]
        asked.append(service.name)
        return status_of(store, service)

    monkeypatch.setattr(Store, "status_of", counting)
    info = daemon.store.service("s7").checks[0]  # type: ignore[union-attr]
    down = ProbeResult(time=0.0, ok=False, duration=0.001, latency=None, error_kind=ErrorKind.REFUSED)
    daemon.store.record(info.key, down)
    daemon._on_transition(Transition(info, Status.UNKNOWN, Status.DOWN, down, 1))
    assert asked == ["s7"]
    service_events = [e.fields for e in daemon.events.recent(10) if e.type == "service"]
    assert [(e["service"], e["status"]) for e in service_events] == [("s7", "down")]
