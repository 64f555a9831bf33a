# callmap's two commands: `make demo` runs the main job, `make test` runs the
# tests. Both set up everything they need first. Downloads and builds (the
# virtual environment, Kafka's jars, broker data) live in $(CACHE), outside the
# repository, so a second run reuses them.

SHELL := /bin/bash
CACHE ?= $(or $(CALLMAP_CACHE),$(HOME)/.cache/callmap)
PYTHON ?= python3
VENV ?= $(CACHE)/venv
PY := $(VENV)/bin/python
export CALLMAP_CACHE := $(CACHE)
# Compiled Python in $(CACHE)/pycache: not beside the sources (the checkout stays
# clean) and not nowhere, even where PYTHONDONTWRITEBYTECODE is set: the tests
# start hundreds of `python -m callmap` processes, and without written bytecode
# each compiled callmap's modules again (about 0.3 s of CPU a process).
export PYTHONPYCACHEPREFIX := $(CACHE)/pycache
unexport PYTHONDONTWRITEBYTECODE

# The environment is reinstalled when pyproject.toml, the C it builds or the
# checkout's path changes (the project is installed editable, so the path matters;
# the editable install builds capture's and streams' C in place).
ENV_KEY := $(shell (cat pyproject.toml $(sort $(wildcard capture/*.c capture/*.h streams/*.c)); echo $(CURDIR)) | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(ENV_KEY)

.PHONY: help demo test faults lint types imports unit integration bench schemas system-deps kafka-jars kube-binaries helm-binary cluster-fetch manifests clean-cache

help:
	@echo "make demo   - start a local Kafka broker and run callmap's real path"
	@echo "make test   - set up everything, then lint, types, import contracts and pytest"
	@echo "make bench  - run the benchmarks and print their tables"
	@echo "make faults - fail processes and brokers under load; print what was lost"

demo: $(STAMP) kafka-jars
	$(PY) -m callmap demo

# Three processes; the tests that use the machine itself run one after another, one
# kind per process: the netns labs, the development cluster (tests/conftest.py).
test: $(STAMP) kafka-jars kube-binaries helm-binary cluster-fetch lint types imports
	$(PY) -m pytest tests --ignore=tests/faults -n 3 --durations=30

# The fault suite: minutes a scenario, so not part of `make test`.
faults: $(STAMP) kafka-jars
	$(PY) -m pytest tests/faults

# Tools the project needs from the operating system: gcc and Python's headers for
# callmap's C modules (capture/*.c, streams/_repeats.c), Java and Maven for Kafka,
# iproute2 and nftables for network namespaces and the lab's service DNAT,
# dnsmasq as the real DNS server, openssl for test certificates, graphviz for
# pictures, real PostgreSQL and rsyslog servers for the sink tests, and for the
# development cluster containerd, runc, the CNI plugins, iptables and conntrack
# (kube-proxy, CNI), buildah and mmdebstrap (its images); Prometheus to scrape
# `callmap metrics`, and Chromium for the web map's browser tests.
# Anything missing comes from Debian's packages.
system-deps:
	@missing=""; \
	command -v gcc >/dev/null || missing="$$missing gcc libc6-dev"; \
	test -e "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" \
	  || missing="$$missing python3-dev"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v dnsmasq >/dev/null || missing="$$missing dnsmasq-base"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v nft >/dev/null || missing="$$missing nftables"; \
	command -v unshare >/dev/null || missing="$$missing util-linux"; \
	command -v dot >/dev/null || missing="$$missing graphviz"; \
	dpkg -s rsyslog-gnutls >/dev/null 2>&1 || missing="$$missing rsyslog rsyslog-gnutls"; \
	dpkg -s postgresql >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v containerd >/dev/null || missing="$$missing containerd"; \
	command -v runc >/dev/null || missing="$$missing runc"; \
	dpkg -s containernetworking-plugins >/dev/null 2>&1 || missing="$$missing containernetworking-plugins"; \
	command -v iptables >/dev/null || missing="$$missing iptables"; \
	command -v conntrack >/dev/null || missing="$$missing conntrack"; \
	command -v buildah >/dev/null || missing="$$missing buildah"; \
	command -v mmdebstrap >/dev/null || missing="$$missing mmdebstrap"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml | system-deps
	@mkdir -p $(CACHE)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,mcp]'
	@rm -f $(VENV)/.installed-* && touch $@

kafka-jars: $(STAMP)
	@$(PY) -m callmap dev kafka fetch

# kube-apiserver and etcd, built with Go from the module proxy (about 5 minutes
# the first time, cached after). A failed build does not stop the run: the
# tests that need the API server then skip, loudly, unless CALLMAP_REQUIRE_KUBE=1.
kube-binaries: $(STAMP)
	@$(PY) -m callmap dev kube fetch || { \
	  echo "*** kube-apiserver/etcd could not be built: Kubernetes API tests will be skipped ***"; \
	  test "$${CALLMAP_REQUIRE_KUBE:-0}" != 1; }

# Everything the development Kubernetes cluster runs (docs/cluster.md): the
# kubelet, kube-proxy, controllers and kubectl, CoreDNS, the pause image and
# callmap's own image. Minutes once, cached after. Unlike the API server alone,
# a failure here fails the run: the real-cluster tests are not optional.
cluster-fetch: $(STAMP) kube-binaries helm-binary
	@$(PY) -m callmap dev cluster fetch

# helm, built with Go from the module proxy (about a minute once, cached after),
# for the chart tests; a failed build skips them loudly unless CALLMAP_REQUIRE_HELM=1.
helm-binary: $(STAMP)
	@$(PY) -m devtools.helm fetch >/dev/null || { \
	  echo "*** helm could not be built: chart tests will be skipped ***"; \
	  test "$${CALLMAP_REQUIRE_HELM:-0}" != 1; }

# deploy/manifests/ rendered anew from the chart (a test fails when they differ)
manifests: helm-binary
	$(PY) -m devtools.helm manifests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy's cache lives in $(CACHE) too: it checks each cached module against its
# file's contents, so a fresh clone reuses it (about 1 s instead of 30).
types: $(STAMP)
	$(VENV)/bin/mypy --cache-dir $(CACHE)/mypy callmap capture watch streams sinks lab devcluster devtools aggregate

imports: $(STAMP)
	$(VENV)/bin/lint-imports

unit: $(STAMP) helm-binary
	$(PY) -m pytest tests/unit

integration: $(STAMP) kafka-jars kube-binaries helm-binary
	$(PY) -m pytest tests/integration

# The tables are printed 160 columns wide (rich reads COLUMNS), so that piped to a
# file their figures are not cut short.
bench: $(STAMP) kafka-jars cluster-fetch
	@set -e; for script in tests/bench/bench_*.py; do \
	  echo "== $$script"; COLUMNS=$${COLUMNS:-160} $(PY) $$script; \
	done

schemas: $(STAMP)
	$(PY) -m callmap dev schemas

clean-cache:
	rm -rf $(VENV)
