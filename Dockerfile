# healthd container image: a venv on the official Python slim image, run as a non-root user.
#
#   docker build -t healthd .
#   docker run -d --name healthd -p 9180:9180 --cap-add NET_RAW \
#       -v /etc/healthd/config.yaml:/etc/healthd/config.yaml:ro \
#       -v healthd-state:/var/lib/healthd healthd
#
# The base image is the one knob to pin: pass a digest for reproducible builds,
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
# (`docker buildx imagetools inspect python:3.11-slim-bookworm` prints the current one).
#
# ICMP: the daemon's interpreter carries the file capability cap_net_raw=ep, which
# takes effect when NET_RAW is in the container's capability set (Docker's default
# set has it; `--cap-add NET_RAW` makes sure). Without it the entrypoint starts the
# plain interpreter: TCP, SYN and HTTP checks need no capability, and ICMP then uses
# unprivileged datagram sockets where net.ipv4.ping_group_range admits the container's
# group (Docker 20.10 and later set it). See deploy/container/entrypoint.sh.
#
# tests/deploy/test_dockerfile.py runs the install steps below in a fresh venv, and
# lints this file with hadolint.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV HEALTHD_VENV=/opt/healthd \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Layer 1, the dependencies: rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
COPY deploy/container/install_deps.py deploy/container/
RUN python -m venv "$HEALTHD_VENV" \
 && python deploy/container/install_deps.py pyproject.toml "$HEALTHD_VENV"
# Layer 2, healthd itself: a source or README edit starts here.
COPY README.md LICENSE config.example.yaml ./
COPY deploy/healthd.service deploy/
COPY daemon/ daemon/
RUN "$HEALTHD_VENV/bin/pip" install --no-deps . \
 && "$HEALTHD_VENV/bin/healthd" --version
# Shell completions and the man page, generated from the parser by build-only tools.
COPY deploy/shell/generate.sh deploy/shell/
# hadolint ignore=DL3013
RUN "$HEALTHD_VENV/bin/pip" install shtab argparse-manpage \
 && PYTHON="$HEALTHD_VENV/bin/python" sh deploy/shell/generate.sh /src/share \
 && "$HEALTHD_VENV/bin/pip" uninstall --yes shtab argparse-manpage

FROM ${PYTHON_IMAGE}
ARG HEALTHD_VERSION=0.1.0
LABEL org.opencontainers.image.title="healthd" \
      org.opencontainers.image.description="Health-check daemon: TCP, SYN-only, ICMP and HTTP probes with a REST API and Prometheus metrics" \
      org.opencontainers.image.source="https://github.com/healthd/healthd" \
      org.opencontainers.image.documentation="https://github.com/healthd/healthd/tree/main/docs" \
      org.opencontainers.image.version="${HEALTHD_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV HEALTHD_VENV=/opt/healthd \
    PATH=/opt/healthd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTHD_LISTEN=0.0.0.0:9180
COPY --from=build /opt/healthd /opt/healthd
COPY --from=build /src/share/ /usr/local/share/
COPY deploy/container/entrypoint.sh /usr/local/bin/healthd-entrypoint
COPY deploy/container/grant_net_raw.py /usr/local/lib/healthd/grant_net_raw.py
RUN python /usr/local/lib/healthd/grant_net_raw.py "$HEALTHD_VENV"
RUN groupadd --system --gid 10001 healthd \
 && useradd --system --uid 10001 --gid healthd --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin healthd \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/healthd
# Snapshots (state_dir: /var/lib/healthd in your config) survive a new container here.
VOLUME ["/var/lib/healthd"]
# A config that probes only the container itself; mount yours over it.
COPY config.example.yaml /etc/healthd/config.yaml

USER 10001:10001
EXPOSE 9180
# `healthd healthcheck` finds the port as `run` does ($HEALTHD_LISTEN, else server.listen),
# so `-e HEALTHD_LISTEN=0.0.0.0:8080` moves the API and the check together.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/healthd/bin/healthd", "healthcheck", "-c", "/etc/healthd/config.yaml", "--timeout", "4s"]
ENTRYPOINT ["/usr/local/bin/healthd-entrypoint"]
# HEALTHD_LISTEN (above) overrides server.listen: inside a container the API must listen
# on all addresses for `-p 9180:9180` to reach it.
CMD ["run", "-c", "/etc/healthd/config.yaml"]
