"""What the store keeps of a check's settings reads as the model's JSON dump, secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

from healthd.config import load
from healthd.infos import service_infos


def test_settings_read_as_the_models_json_dump_and_mask_secrets(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    check = {"name": "web", "type": "http", "url": "http://127.0.0.1:1/", "headers": {"X-Key": "hunter2"}}
    path.write_text(json.dumps({"services": [{"name": "s", "checks": [check]}]}))
    config = load(path).config
    info = service_infos(config)[0].checks[0]
    assert dict(info.settings) == config.services[0].checks[0].model_dump(mode="json")
    assert info.settings["url"] == "http://127.0.0.1:1/" and "hunter2" not in json.dumps(dict(info.settings))
    assert info.settings == dict(info.settings) and len(info.settings) == len(dict(info.settings))
