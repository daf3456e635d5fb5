# healthd container image: a venv on the official Python slim image, run as a non-root user.
#
#   docker build -t healthd .
#   docker run -d --name healthd -p 9180:9180 --cap-add NET_RAW \
#       -v /etc/healthd/config.yaml:/etc/healthd/config.yaml:ro healthd
#
# ICMP: the daemon's interpreter carries the file capability cap_net_raw=ep, which
# takes effect when NET_RAW is in the container's capability set (Docker's default
# set has it; `--cap-add NET_RAW` makes sure). Without it the entrypoint starts the
# plain interpreter: TCP, SYN and HTTP checks need no capability, and ICMP then uses
# unprivileged datagram sockets where net.ipv4.ping_group_range admits the container's
# group (Docker 20.10 and later set it). See deploy/container/entrypoint.sh.
#
# tests/deploy/test_dockerfile.py runs the install steps below in a fresh venv.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV HEALTHD_VENV=/opt/healthd \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# What the package is built from; its dependencies come from pyproject.toml alone.
COPY pyproject.toml README.md ./
COPY daemon/ daemon/
RUN python -m venv "$HEALTHD_VENV" \
 && "$HEALTHD_VENV/bin/pip" install . \
 && "$HEALTHD_VENV/bin/healthd" --version

FROM ${PYTHON_IMAGE}
ENV HEALTHD_VENV=/opt/healthd \
    PATH=/opt/healthd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/healthd /opt/healthd
COPY deploy/container/entrypoint.sh /usr/local/bin/healthd-entrypoint
COPY deploy/container/grant_net_raw.py /usr/local/lib/healthd/grant_net_raw.py
RUN python /usr/local/lib/healthd/grant_net_raw.py "$HEALTHD_VENV"
RUN groupadd --system --gid 10001 healthd \
 && useradd --system --uid 10001 --gid healthd --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin healthd
# A config that probes only the container itself; mount yours over it.
COPY config.example.yaml /etc/healthd/config.yaml

USER 10001:10001
EXPOSE 9180
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/healthd/bin/python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9180/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["/usr/local/bin/healthd-entrypoint"]
# --listen overrides server.listen: inside a container the API must listen on all
# addresses for `-p 9180:9180` to reach it.
CMD ["run", "-c", "/etc/healthd/config.yaml", "--listen", "0.0.0.0:9180"]
