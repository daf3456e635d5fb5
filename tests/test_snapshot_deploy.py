"""The deployments provide the state directory the docs tell operators to set as state_dir."""

from __future__ import annotations

from pathlib import Path

from healthd.config import build_config

from tests.deploy.dockerfile import parse

REPO = Path(__file__).resolve().parents[1]
STATE_DIR = "/var/lib/healthd"


def test_systemd_unit_has_a_private_state_directory() -> None:
    lines = (REPO / "deploy" / "healthd.service").read_text().splitlines()
    assert "StateDirectory=healthd" in lines and "StateDirectoryMode=0700" in lines


def test_container_declares_the_state_volume_owned_by_its_user() -> None:
    instructions = parse((REPO / "Dockerfile").read_text())
    volumes = [i.args for i in instructions if i.keyword == "VOLUME"]
    assert volumes == [f'["{STATE_DIR}"]']
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert f"install -d -o 10001 -g 10001 -m 0700 {STATE_DIR}" in runs


def test_the_documented_state_dir_is_a_valid_config() -> None:
    config = build_config(
        "x.yaml",
        {
            "state_dir": STATE_DIR,
            "services": [{"name": "s", "checks": [{"type": "tcp", "target": "127.0.0.1:1"}]}],
        },
    )
    assert str(config.state_dir) == STATE_DIR and config.snapshot_interval == 60.0
    example = (REPO / "config.example.yaml").read_text()
    assert f"# state_dir: {STATE_DIR}" in example
