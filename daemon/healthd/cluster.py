"""Which shard owns a check: Prometheus' hashmod arithmetic, and rendezvous for replicas.

Pure: no I/O. `shard_of` is exactly what a Prometheus relabel rule computes with

    source_labels: [service, check]
    separator: /
    action: hashmod
    modulus: N

(MD5 of the text, the last 8 bytes read as a big-endian unsigned integer,
modulo N), so an operator can predict ownership without asking healthd.
With `replicas` R > 1 the first owner is still that shard; the other R-1 are
the remaining shards ranked by rendezvous (highest random weight) hashing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from healthd.config.diff import CheckKey, format_check_id
from healthd.config.model import ClusterConfig, Config, Service

_ORDINAL = re.compile(r"-(\d+)$")  # a StatefulSet pod's hostname: NAME-ORDINAL

ENV_INDEX, ENV_COUNT, ENV_REPLICAS = "HEALTHD_SHARD_INDEX", "HEALTHD_SHARD_COUNT", "HEALTHD_SHARD_REPLICAS"
ENV_POD_INDEX = "POD_INDEX"  # the manifest maps the apps.kubernetes.io/pod-index label here


def hash64(text: str) -> int:
    """Prometheus' hashmod hash: the last 8 bytes of MD5, big-endian."""
    return int.from_bytes(hashlib.md5(text.encode(), usedforsecurity=False).digest()[8:], "big")


def shard_of(key: str, count: int) -> int:
    """The shard of `SERVICE/CHECK` among `count` shards."""
    return hash64(key) % count


def owners(key: str, count: int, replicas: int = 1) -> list[int]:
    """The `replicas` shards that own `key`, the hashmod shard first."""
    first = shard_of(key, count)
    if replicas <= 1:
        return [first]
    others = sorted((s for s in range(count) if s != first), key=lambda s: hash64(f"{key}#{s}"), reverse=True)
    return [first, *others[: replicas - 1]]


def owner_table(keys: Iterable[str], count: int, replicas: int = 1) -> list[str]:
    """`SERVICE/CHECK SHARD[,SHARD...]` per key (`healthd shard-of`). Raises ValueError."""
    if count < 1 or not 1 <= replicas <= count:
        raise ValueError("need --shard-count >= 1 and 1 <= --replicas <= --shard-count")
    lines = []
    for key in keys:
        if key.count("/") != 1 or key.startswith("/") or key.endswith("/"):
            raise ValueError(f"{key!r} is not SERVICE/CHECK")
        lines.append(f"{key} {','.join(str(shard) for shard in owners(key, count, replicas))}")
    return lines


@dataclass(frozen=True)
class Shard:
    """This instance's place in the cluster."""

    index: int = 0
    count: int = 1
    replicas: int = 1

    @property
    def triple(self) -> tuple[int, int, int]:
        return (self.index, self.count, self.replicas)

    def owns(self, key: str) -> bool:
        if self.count == 1:
            return True
        return self.index in owners(key, self.count, self.replicas)


@dataclass(frozen=True)
class ShardOverrides:
    """What the process says about its shard (flags, environment, hostname), above the config."""

    index: int | None = None
    count: int | None = None
    replicas: int | None = None
    pod_index: int | None = None  # the StatefulSet ordinal, used only when nothing else sets the index

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str],
        hostname: str,
        index: int | None = None,
        count: int | None = None,
    ) -> ShardOverrides:
        """Flags (`index`, `count`) win over the environment. Raises ValueError on a bad number."""
        return cls(
            index=index if index is not None else _env_int(environ, ENV_INDEX),
            count=count if count is not None else _env_int(environ, ENV_COUNT),
            replicas=_env_int(environ, ENV_REPLICAS),
            pod_index=_env_int(environ, ENV_POD_INDEX) if ENV_POD_INDEX in environ else _ordinal(hostname),
        )


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ValueError(f"{name}={raw!r} is not a whole number")
    return int(raw)


def _ordinal(hostname: str) -> int | None:
    match = _ORDINAL.search(hostname.split(".")[0])
    return int(match.group(1)) if match else None


def resolve(cluster: ClusterConfig, overrides: ShardOverrides) -> Shard:
    """Flags/environment over `cluster:` over the pod ordinal. Raises ValueError if inconsistent."""
    count = overrides.count if overrides.count is not None else cluster.shard_count
    replicas = overrides.replicas if overrides.replicas is not None else cluster.replicas
    index = overrides.index if overrides.index is not None else cluster.shard_index
    if count < 1:
        raise ValueError(f"shard count {count} must be at least 1")
    if index is None:
        index = overrides.pod_index if count > 1 else 0
    if index is None:
        raise ValueError(
            f"shard count is {count} but no shard index is set: use --shard-index, {ENV_INDEX}, "
            f"cluster.shard_index, {ENV_POD_INDEX} or a hostname ending in -N"
        )
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} must be from 0 to {count - 1} (the shard count is {count})")
    if not 1 <= replicas <= count:
        raise ValueError(f"replicas {replicas} must be from 1 to the shard count {count}")
    return Shard(index, count, replicas)


def own_share(config: Config, shard: Shard) -> Config:
    """The config with only this shard's checks; services left without checks are dropped."""
    if shard.count == 1:
        return config
    services: list[Service] = []
    for svc in config.services:
        mine = [check for check in svc.checks if shard.owns(format_check_id(CheckKey(svc.name, check.name)))]
        if mine:
            services.append(svc.model_copy(update={"checks": mine}))
    # model_copy skips validation on purpose: a shard may own no check at all
    return config.model_copy(update={"services": services})
