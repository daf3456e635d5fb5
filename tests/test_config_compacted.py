"""The parsed data the models are built from is a copy that shares no object with the parse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from healthd.config import load
from healthd.config.loader import compacted
from healthd.config.yaml_source import parse
from healthd.errors import ConfigError


def _objects(value: Any) -> list[Any]:
    found = [value]
    if isinstance(value, dict):
        for key, item in value.items():
            found += [*_objects(key), *_objects(item)]
    elif isinstance(value, list):
        for item in value:
            found += _objects(item)
    return found


def test_the_copy_is_equal_and_shares_no_container_or_string() -> None:
    text = "services:\n  - name: web-frontend\n    checks:\n      - {name: port-80, type: tcp, target: 'localhost:80'}\n"
    data, _, _ = parse(text)
    copy = compacted(data)
    assert copy == data
    originals = {id(o) for o in _objects(data) if isinstance(o, dict | list | str) and len(o) > 1}
    assert originals and not originals & {id(o) for o in _objects(copy)}


def test_a_config_loaded_through_the_copy_still_reports_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "services:\n  - name: web\n    checks:\n      - {name: a, type: tcp, target: 'localhost:80', interval: -1s}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert any(error.startswith(f"{path}:4: ") for error in caught.value.errors)  # from the parse's tree
