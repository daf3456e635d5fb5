"""The values the config fuzzer draws from: option names, right, plausible and hostile values."""

from __future__ import annotations

from typing import Any

from healthd.config import CHECK_MODELS
from healthd.config.model import Config, MetricsConfig, SchedulerConfig, ServerConfig, Service

TARGETS = {"tcp": "target", "syn": "target", "icmp": "target", "http": "url"}
CHECK_OPTIONS = sorted({field for model in CHECK_MODELS.values() for field in model.model_fields})
ALL_KEYS = sorted(
    set(CHECK_OPTIONS)
    | set(Config.model_fields)
    | set(Service.model_fields)
    | set(ServerConfig.model_fields)
    | set(SchedulerConfig.model_fields)
    | set(MetricsConfig.model_fields)
    | {"defaults", "username", "password", "password_file"}
)

# values that are right for some option, so that cases pass the type checks and go further
PLAUSIBLE = [
    "1s",
    "10s",
    "500ms",
    "1m30s",
    "1h30m",
    "14d",
    "2w",
    5,
    0.5,
    1,
    2,
    3,
    100,
    120,
    True,
    False,
    "auto",
    "ipv4",
    "ipv6",
    "graceful",
    "reset",
    "127.0.0.1:1",
    "[::1]:1",
    "::1",
    "127.0.0.1",
    "localhost",
    "lo",
    "http://127.0.0.1:1/",
    "https://[::1]:1/x?k=v",
    "GET",
    "HEAD",
    "2xx",
    200,
    [200, "3xx"],
    "ok",
    "^a+$",
    'status == "UP"',
    ["$.a[0] >= 1", "b"],
    "1.2",
    1.3,
    {"X-A": "b"},
    {"username": "u", "password": "p"},
    {"team": "core"},
    "127.0.0.1:0",
    "/dev/null",
    "/etc/hostname",
]
TARGET_VALUES = [
    "127.0.0.1:1",
    "[::1]:1",
    "::1",
    "127.0.0.1",
    "localhost",
    "http://127.0.0.1:1/",
    "https://[::1]:1/x?k=v",
    "h",
]
# values that break something
HOSTILE = [
    float("nan"),
    float("inf"),
    -float("inf"),
    -1,
    0,
    10**400,
    -(10**30),
    2**63,
    1e308,
    "",
    " ",
    "0" * 400,
    "9" * 5000,
    "-5s",
    "1e400",
    "nan",
    ".inf",
    "2001-13-45",
    "30s1m",
    "1m1m",
    "1.5.5s",
    "(" * 300 + ")" * 300,
    "a{99999999999999999999}",
    "(",
    "\x00",
    "\x07bell",
    "\u2028",
    "\ud7ff",
    "é" * 50,
    "x" * 5000,
    "/dev/zero",
    "/nonexistent/file",
    "/proc/self/mem",
    "/tmp",
    "::1:80",
    "[::1]",
    "http://user:pw@h/",
    "ftp://h/",
    "$.a == " + "[" * 50,
    "$[" + "9" * 50 + "]",
    None,
    [],
    {},
    [[[[[]]]]],
    {"a": {"b": {"c": {}}}},
]
TYPOS = ["intervall", "timout", "chcks", "servics", "targt", "lables", "defualts", "", "Type", "1", "a.b"]

CHARS = "ab_.-:/ 0123456789\t\n\x00\x07\x1b\x7f\x85\u00e9\u2028\ufeff\U0001f600'\"[]{}#&*!|>%@`,?"
TAGS = [
    "!!int",
    "!!bool",
    "!!float",
    "!!str",
    "!!timestamp",
    "!!binary",
    "!!null",
    "!!set",
    "!!omap",
    "!!seq",
    "!!map",
    "!!python/object:os.system",
    "!custom",
    "!<tag:x>",
    "!!merge",
]
CONTROL = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\ufeff", "\u2028", "\t", "\r", "\ud800"]
PIECES = [
    "[" * 200,
    "{a: " * 100,
    "9" * 5000,
    ": :",
    "- - -",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "'",
    '"',
    "? ",
]
ENCODINGS = ["utf-8"] * 12 + ["utf-8-sig", "utf-16", "latin-1"]

RIGHT: dict[str, list[Any]] = {
    "interval": ["10s", "1m30s", 30, "1h"],
    "timeout": ["500ms", 1, "2s"],
    "rise": [1, 2, 5],
    "fall": [1, 3],
    "history": [1, 120],
    "ip_family": ["auto", "ipv4", "ipv6"],
    "close": ["graceful", "reset"],
    "count": [1, 3],
    "packet_interval": ["10ms", 0.1],
    "payload_size": [0, 56],
    "ttl": [1, 64],
    "dont_fragment": [True, False],
    "max_loss": [0, 0.5],
    "method": ["GET", "head"],
    "headers": [{"X-A": "b"}],
    "body": ["x"],
    "follow_redirects": [True],
    "max_body_bytes": [0, 1024],
    "keepalive": [True],
    "expect_status": [200, [200, "3xx"], "2xx"],
    "body_regex": ["ok", "^a+$"],
    "body_not_regex": ["error"],
    "expect_headers": [{"Content-Type": "json"}],
    "json_path": ['status == "UP"', ["$.a[0] >= 1", "b"]],
    "verify": [False],
    "server_name": ["example.test"],
    "min_tls_version": ["1.2", 1.3],
    "cert_expiry_min": ["14d", "336h"],
}
TARGET_FOR = {
    "tcp": ["127.0.0.1:1", "[::1]:1", "h:80"],
    "syn": ["127.0.0.1:1", "[::1]:1"],
    "icmp": ["::1", "127.0.0.1", "h"],
    "http": ["http://127.0.0.1:1/", "https://[::1]:1/x?k=v"],
}
