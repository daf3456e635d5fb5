"""Config: YAML -> validated, immutable pydantic models."""

from daemon.config.checks import (
    CHECK_MODELS,
    Check,
    CheckBase,
    HostPortCheck,
    HttpCheck,
    IcmpCheck,
    SynCheck,
    TcpCheck,
)
from daemon.config.diff import CheckKey, ConfigDiff, check_key, checks_by_key, diff_configs
from daemon.config.loader import build_config, load_config
from daemon.config.model import Config, MetricsConfig, SchedulerConfig, ServerConfig, Service
from daemon.config.types import format_duration, parse_duration, split_host_port

__all__ = [
    "CHECK_MODELS",
    "Check",
    "CheckBase",
    "CheckKey",
    "Config",
    "ConfigDiff",
    "HostPortCheck",
    "HttpCheck",
    "IcmpCheck",
    "MetricsConfig",
    "SchedulerConfig",
    "ServerConfig",
    "Service",
    "SynCheck",
    "TcpCheck",
    "build_config",
    "check_key",
    "checks_by_key",
    "diff_configs",
    "format_duration",
    "load_config",
    "parse_duration",
    "split_host_port",
]
