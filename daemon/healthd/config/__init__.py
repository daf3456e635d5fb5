"""Config: YAML -> validated, immutable pydantic models."""

from healthd.config.checks import (
    CHECK_MODELS,
    MODELS,
    Check,
    CheckBase,
    HostPortCheck,
    HttpCheck,
    IcmpCheck,
    SynCheck,
    TcpCheck,
)
from healthd.config.diff import (
    CheckKey,
    ConfigDiff,
    check_key,
    checks_by_key,
    diff_configs,
    format_check_id,
)
from healthd.config.loader import build_config
from healthd.config.model import ClusterConfig, Config, MetricsConfig, SchedulerConfig, ServerConfig, Service
from healthd.config.notify import AlertmanagerConfig, NotifyConfig, WebhookConfig
from healthd.config.sources import Loaded, load, load_config
from healthd.config.types import format_duration, parse_duration, split_host_port

__all__ = [
    "CHECK_MODELS",
    "MODELS",
    "AlertmanagerConfig",
    "Check",
    "CheckBase",
    "CheckKey",
    "ClusterConfig",
    "Config",
    "ConfigDiff",
    "HostPortCheck",
    "HttpCheck",
    "IcmpCheck",
    "Loaded",
    "MetricsConfig",
    "NotifyConfig",
    "SchedulerConfig",
    "ServerConfig",
    "Service",
    "SynCheck",
    "TcpCheck",
    "WebhookConfig",
    "build_config",
    "check_key",
    "checks_by_key",
    "diff_configs",
    "format_check_id",
    "format_duration",
    "load",
    "load_config",
    "parse_duration",
    "split_host_port",
]
