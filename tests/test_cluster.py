"""healthd.cluster: the hashmod arithmetic, rendezvous replicas, shard resolution, the daemon's share."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from healthd import cluster
from healthd.app import Daemon, create_app
from healthd.config import ClusterConfig, build_config
from healthd.errors import ConfigError
from healthd.probes import PROBES
from prometheus_client.parser import text_string_to_metric_families

KEYS = [f"svc{i % 37}/check-{i}" for i in range(1000)]


def config_of(keys: list[str], cluster_section: dict[str, Any] | None = None) -> Any:
    services: dict[str, list[dict[str, Any]]] = {}
    for key in keys:
        service, check = key.split("/")
        services.setdefault(service, []).append({"type": "tcp", "name": check, "target": "127.0.0.1:1"})
    data: dict[str, Any] = {"services": [{"name": n, "checks": c} for n, c in services.items()]}
    if cluster_section is not None:
        data["cluster"] = cluster_section
    return build_config("test.yaml", data)


def owned(daemon: Daemon) -> set[str]:
    return {f"{svc.name}/{check.name}" for svc in daemon.config.services for check in svc.checks}


# ---- the arithmetic -------------------------------------------------------------------


def test_hash_is_the_last_eight_bytes_of_md5_big_endian() -> None:
    # md5("web/tcp") = d54473a344046ed2 c6af29c346dcd9c5: the second half, read big-endian
    assert hashlib.md5(b"web/tcp").hexdigest() == "d54473a344046ed2c6af29c346dcd9c5"
    assert cluster.hash64("web/tcp") == 0xC6AF29C346DCD9C5 == 14316707659118336453
    assert cluster.shard_of("web/tcp", 3) == 14316707659118336453 % 3 == 2


def test_shards_are_balanced_and_cover_every_key() -> None:
    shards = [cluster.shard_of(key, 3) for key in KEYS]
    assert set(shards) == {0, 1, 2}
    for index in range(3):
        assert 280 < shards.count(index) < 390  # binomial(1000, 1/3): mean 333, sd 15


def test_three_to_four_shards_moves_about_three_quarters() -> None:
    """hashmod is not consistent hashing: a key stays only if h%3 == h%4, i.e. h%12 in {0, 1, 2}."""
    moved = sum(cluster.shard_of(key, 3) != cluster.shard_of(key, 4) for key in KEYS)
    assert 0.70 < moved / len(KEYS) < 0.80


def test_replicas_are_distinct_shards_led_by_the_hashmod_shard() -> None:
    for key in KEYS[:200]:
        owners = cluster.owners(key, 5, 2)
        assert len(set(owners)) == 2 and owners[0] == cluster.shard_of(key, 5)
        assert cluster.owners(key, 5, 5)[:2] == owners  # rendezvous: more replicas extend the list
    assert cluster.owners("a/b", 1, 1) == [0]


# ---- where the index comes from ----------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "environ", "hostname", "flags", "expected"),
    [
        ({}, {}, "box", {}, (0, 1, 1)),
        ({"shard_count": 3}, {}, "healthd-2", {}, (2, 3, 1)),
        ({"shard_count": 3}, {"POD_INDEX": "1"}, "healthd-2", {}, (1, 3, 1)),
        ({"shard_count": 3, "shard_index": 0}, {"POD_INDEX": "1"}, "healthd-2", {}, (0, 3, 1)),
        ({"shard_count": 3, "shard_index": 0}, {"HEALTHD_SHARD_INDEX": "2"}, "x", {}, (2, 3, 1)),
        ({"shard_count": 3}, {"HEALTHD_SHARD_INDEX": "2"}, "x", {"index": 1}, (1, 3, 1)),
        ({}, {"HEALTHD_SHARD_COUNT": "4", "HEALTHD_SHARD_REPLICAS": "2"}, "h-3.ns.svc", {}, (3, 4, 2)),
        ({"shard_count": 2}, {}, "healthd-5", {"count": 8}, (5, 8, 1)),
    ],
)
def test_flags_over_environment_over_config_over_pod_ordinal(
    config: dict[str, Any],
    environ: dict[str, str],
    hostname: str,
    flags: dict[str, int],
    expected: tuple[int, ...],
) -> None:
    overrides = cluster.ShardOverrides.from_environment(environ, hostname, **flags)
    assert cluster.resolve(ClusterConfig(**config), overrides).triple == expected


@pytest.mark.parametrize(
    ("config", "overrides", "message"),
    [
        ({"shard_count": 3}, {}, "no shard index is set"),
        ({"shard_count": 3}, {"index": 3}, r"shard index 3 must be from 0 to 2 \(the shard count is 3\)"),
        ({}, {"count": 2, "replicas": 3, "index": 0}, "replicas 3 must be from 1 to the shard count 2"),
        ({}, {"count": 0}, "shard count 0 must be at least 1"),
    ],
)
def test_inconsistent_shard_settings_are_refused(
    config: dict[str, Any], overrides: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        cluster.resolve(ClusterConfig(**config), cluster.ShardOverrides(**overrides))


def test_a_bad_environment_number_is_named() -> None:
    with pytest.raises(ValueError, match="HEALTHD_SHARD_INDEX='two' is not a whole number"):
        cluster.ShardOverrides.from_environment({"HEALTHD_SHARD_INDEX": "two"}, "h")


# ---- the daemon keeps its share ------------------------------------------------------------


def test_shards_partition_the_checks() -> None:
    config = config_of(KEYS, {"shard_count": 3})
    shares = [owned(Daemon(config, None, PROBES, None, cluster.ShardOverrides(index=i))) for i in range(3)]
    assert set().union(*shares) == set(KEYS)
    assert sum(len(share) for share in shares) == len(KEYS)  # pairwise disjoint
    for index, share in enumerate(shares):
        assert all(cluster.shard_of(key, 3) == index for key in share)


def test_with_two_replicas_every_check_is_on_exactly_two_shards() -> None:
    config = config_of(KEYS, {"shard_count": 3, "replicas": 2})
    shares = [owned(Daemon(config, None, PROBES, None, cluster.ShardOverrides(index=i))) for i in range(3)]
    for key in KEYS:
        holders = [index for index, share in enumerate(shares) if key in share]
        assert holders == sorted(cluster.owners(key, 3, 2))


def test_a_shard_without_a_pod_index_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="cluster: shard count is 3 but no shard index"):
        Daemon(config_of(KEYS, {"shard_count": 3}), None, PROBES, None)


async def test_the_api_and_metrics_say_which_shard_answered() -> None:
    config = config_of(KEYS, {"shard_count": 3})
    app = create_app(config, shard=cluster.ShardOverrides(index=1))
    async with TestClient(TestServer(app)) as client:
        body = await (await client.get("/api/v1/services")).json()
        text = await (await client.get("/metrics")).text()
    mine = {f"{svc['name']}/{check['name']}" for svc in body["services"] for check in svc["checks"]}
    assert mine == {key for key in KEYS if cluster.shard_of(key, 3) == 1}
    assert body["shard"] == {"index": 1, "count": 3, "replicas": 1, "checks": len(mine)}
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "healthd_shard_info"]
    assert [(s.labels, s.value) for s in family.samples] == [({"index": "1", "count": "3"}, 1.0)]


def test_shard_of_command_prints_the_owners() -> None:
    healthd = Path(sys.executable).parent / "healthd"
    done = subprocess.run(
        [str(healthd), "shard-of", *KEYS[:50], "--shard-count", "4", "--replicas", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [f"{key} {','.join(map(str, cluster.owners(key, 4, 2)))}" for key in KEYS[:50]]
    bad = subprocess.run(
        [str(healthd), "shard-of", "no-slash", "--shard-count", "4"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "'no-slash' is not SERVICE/CHECK" in bad.stderr


@pytest.mark.parametrize(
    ("flags", "environ", "message"),
    [
        (["--shard-count", "3", "--shard-index", "5"], {}, "cluster: shard index 5 must be from 0 to 2"),
        (
            ["--shard-index", "1"],
            {"HEALTHD_SHARD_COUNT": "3", "HEALTHD_SHARD_REPLICAS": "4"},
            "replicas 4 must be",
        ),
        (
            ["--shard-index", "1"],
            {"HEALTHD_SHARD_COUNT": "x"},
            "healthd: HEALTHD_SHARD_COUNT='x' is not a whole number",
        ),
    ],
)
def test_run_refuses_an_impossible_shard(
    tmp_path: Path, flags: list[str], environ: dict[str, str], message: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("services:\n  - name: web\n    checks:\n      - {type: tcp, target: '127.0.0.1:9'}\n")
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "healthd"),
            "run",
            "-c",
            str(path),
            "--listen",
            "127.0.0.1:0",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", **environ},
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
