"""How a probe names a gauge that carries labels of its own (blackbox_exporter's `*_info` style).

A probe reports gauges as `{key: value}`. A plain key is the family name; a key
built by `gauge_key("probe_tls_version_info", version="TLS 1.3")` also carries
label pairs, written after the check's own labels. Pure string code: probes
and the metrics writer share it without knowing each other.
"""

from __future__ import annotations


def gauge_key(name: str, **labels: str) -> str:
    """`name{a="x",b="y"}` with the values escaped as the exposition formats require."""
    if not labels:
        return name
    pairs = ",".join(f'{label}="{escape_label_value(value)}"' for label, value in labels.items())
    return f"{name}{{{pairs}}}"


def split_gauge_key(key: str) -> tuple[str, str]:
    """(family name, `,a="x",...` to append to the check's labels, or "")."""
    name, brace, rest = key.partition("{")
    if not brace:
        return key, ""
    return name, "," + rest.removesuffix("}")


def escape_label_value(value: str) -> str:
    # label value escaping of both text formats: backslash, double quote, line feed
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")
    return value
