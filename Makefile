# pokan: `make run` starts a node, `make test` runs every test and lint.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCES := $(shell find pokan twisted -name '*.py') setup.cfg setup.py pyproject.toml
TRIAL_JOBS ?= 2

.PHONY: run test lint unit redis-server browser nftables clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# A plain (not editable) install, as users do: it is what exposes
# twisted/plugins/pokan_plugin.py and so `twistd pokan`.
# `run` needs only pokan's own dependencies; `test` and `lint` the dev tools.
$(VENV)/.installed-run: $(BIN)/python $(SOURCES)
	$(BIN)/pip install -q .
	touch $@

$(VENV)/.installed: $(BIN)/python $(SOURCES)
	$(BIN)/pip install -q '.[dev]'
	touch $@

# twistd ends a Ctrl-C by killing itself with SIGINT; the shell takes that
# status (130) as a normal end, so make does not report "*** Interrupt".
run: $(VENV)/.installed-run
	@trap : INT; $(BIN)/twistd -n --pidfile= pokan --address 127.0.0.1 $(ARGS) \
	  || [ $$? -eq 130 ]

redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "redis-server is missing; installing Debian's redis-server"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
	  || { echo "could not install redis-server: install it (Debian: apt-get install redis-server) and retry" >&2; exit 1; }; }

# The dashboard's browser test drives Debian's chromium (with Playwright, from
# the dev extras; Playwright's own browser downloads are never used). Where no
# chromium can be installed that one test is skipped, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "chromium is missing; installing Debian's chromium for the dashboard's browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || echo "could not install chromium (Debian: apt-get install chromium): the dashboard's browser test will be skipped" >&2; }

# The network-namespace test (tests/net/test_netns_cluster.py) makes its
# partitions and its loss with Debian's nftables, inside namespaces of its own.
# Where nft cannot be installed (or the tests do not run as root) it is skipped,
# saying why.
nftables:
	@command -v nft >/dev/null 2>&1 || { \
	  echo "nft is missing; installing Debian's nftables for the network-namespace test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables) \
	  || echo "could not install nftables (Debian: apt-get install nftables): the network-namespace test will be skipped" >&2; }

lint: $(VENV)/.installed
	$(BIN)/ruff check pokan tests bench twisted
	$(BIN)/mypy

unit: $(VENV)/.installed redis-server browser nftables
	PYTHONPATH=$(CURDIR) $(BIN)/python -m twisted.trial -j$(TRIAL_JOBS) tests

test: lint unit

clean:
	rm -rf $(VENV) build *.egg-info _trial_temp*
