#!/bin/sh
# Container entrypoint: run healthd with CAP_NET_RAW where the container allows it.
#
# The image runs as a non-root user, and Docker hands `--cap-add` capabilities only to
# root processes, so they would not reach the daemon. The image therefore carries
# python3-netraw: a copy of the venv's interpreter with the file capability
# cap_net_raw=ep (deploy/container/grant_net_raw.py). The kernel refuses to start such a
# file when NET_RAW is outside the container's bounding set (`--cap-drop ALL`,
# restricted Kubernetes pods), so try it first and fall back to the plain interpreter.
set -eu
venv="${HEALTHD_VENV:-/opt/healthd}"
if "$venv/bin/python3-netraw" -c '' 2>/dev/null; then
    exec "$venv/bin/python3-netraw" "$venv/bin/healthd" "$@"
fi
echo "healthd: NET_RAW is not available in this container; ICMP checks work only where" \
    "net.ipv4.ping_group_range includes group $(id -g)" >&2
exec "$venv/bin/healthd" "$@"
