# syntax=docker/dockerfile:1
# One image for every callmap component; the command picks the component:
#   capture run | watch | streams worker | sink KIND | topics create | list | ...
# The build stage compiles what has no wheel for the platform (faust-streaming
# on arm64) into a virtual environment; the final image gets that environment
# and nothing to build with. Everything runs as user 10001 except the capture
# agent, which the chart and the compose file start as root with only the
# capabilities it uses (docs/deploy.md, "Privileges"). The capture agent's BPF
# program is Python data in capture/bpf.py: no libpcap or tcpdump at run time.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# A C compiler for sdists without a wheel and for callmap's own C: the sock_diag
# loop (capture/_inetdiag.c), the usual DNS response (capture/_dnsfast.c) and a
# raw batch's repeats (streams/_repeats.c);
# Python's headers where the base image has none (a bare Debian one: the
# official Python images have them). This stage is thrown away.
# Pinning Debian's gcc to a build number would only make rebuilds fail when it moves.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && if [ ! -e "$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; \
    then apt-get install -y --no-install-recommends python3-dev; fi \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/callmap
WORKDIR /src
# Every package pyproject.toml installs (a test checks this list against it).
COPY pyproject.toml README.md ./
COPY callmap ./callmap
COPY capture ./capture
COPY watch ./watch
COPY streams ./streams
COPY aggregate ./aggregate
COPY sinks ./sinks
COPY lab ./lab
# pip compiles every module as it installs it: the read-only image never needs to.
# The C modules are optional for pip (an install without a compiler goes on
# without them); not for the image. -I: not the source tree here, the
# installed package.
RUN /opt/callmap/bin/pip install . \
 && /opt/callmap/bin/python -I -c "import capture._inetdiag, capture._dnsfast, streams._repeats"

FROM ${PYTHON_IMAGE} AS build-init
# tini as process 1 forwards SIGTERM to callmap and reaps children, which a
# Python process 1 would not do (the kernel ignores signals process 1 has no
# handler for). The static binary needs nothing else from the package.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="callmap" \
      org.opencontainers.image.description="Who calls whom inside Kubernetes clusters" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 callmap \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/callmap \
      --no-create-home --shell /usr/sbin/nologin callmap \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/callmap
COPY --from=build-init /usr/bin/tini-static /usr/bin/tini
COPY --from=build /opt/callmap /opt/callmap
ENV PATH=/opt/callmap/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Faust keeps its data directory in the working directory.
WORKDIR /var/lib/callmap
USER 10001:10001
# Each component serves its own metrics port, which is also its health check:
# the chart probes it; an image-wide HEALTHCHECK could name only one port.
ENTRYPOINT ["/usr/bin/tini", "--", "callmap"]
CMD ["--help"]
