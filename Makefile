# xenvol — developer entry points. Every target installs what it needs first.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# dom0's Python for the plugin in tests: CPython 3.6 (XenServer 8 / XCP-ng 8.3 dom0) with XenAPI
# from PyPI, where a python3.6 is found; else the simulator builds one from its own Python.
# Its coverage (6.2, the last for 3.6) is for `make test` only: see COVERAGE below.
PYTHON36 ?= $(firstword $(shell python3.6 -c "import sys; print(sys.executable)" 2>/dev/null) $(wildcard $(HOME)/.pyenv/versions/3.6*/bin/python3.6))
DOM0    := .venv-dom0
NETNS   := tools/in-private-netns
SM_TIMING ?= fast

.PHONY: test check lint coverage demo pack bench bench-concurrent deps sysdeps npmdeps clean

# Two distributions from this repository: xenvol (client, CLI, pack tools) and xapisim
# (the simulator, whose xe is xapisim-xe); one after the other, so that an older single
# install's scripts are gone before xapisim installs its own.
$(STAMP): pyproject.toml simulator/pyproject.toml dom0_plugins/etc/xapi.d/plugins/xenvol_dom0/VERSION
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,pack]'
	$(PY) -m pip install -q -e ./simulator
	touch $(STAMP)

$(DOM0)/.installed: $(STAMP)
	@if [ -n "$(PYTHON36)" ]; then \
	    rm -rf $(DOM0) && $(PYTHON36) -m venv $(DOM0) && \
	    $(DOM0)/bin/python -m pip install -q 'XenAPI>=23.8' 'coverage==6.2' && \
	    $(PY) -c 'import sys; from xapisim.plugins import site_packages; site_packages(sys.argv[1])' $(DOM0) && \
	    touch $@; \
	else echo "no python3.6 found: plugins run under the simulator's Python (set PYTHON36=...)"; fi

deps: $(STAMP) $(DOM0)/.installed sysdeps npmdeps

sysdeps:
	tools/install-debian-deps

# Xen Orchestra's XAPI client (npm xen-api, pinned) for tests/test_xen_api_client.py, into
# ~/.cache/xenvol/npm ($$XENVOL_NPM_CACHE): here, outside the tests' private network namespace.
npmdeps:
	tools/install-xen-api-client

# Coverage data of a test run (.coveragerc): this Python's processes, and the plugin processes
# the simulator execs, measured by .venv-dom0's coverage tracer when XAPISIM_DOM0_COVERAGE names
# the data file (a test-only hook: without it the plugin runs exactly as xapi runs it; its line
# data becomes coverage data in tools/dom0_coverage.py).
COVDATA := $(CURDIR)/.coverage-data
COVERAGE = COVERAGE_FILE=$(COVDATA)/cov $(VENV)/bin/coverage

# The suite runs in TEST_WORKERS pytest-xdist workers, each in a network and mount namespace of
# its own with its own real peers (tests/suite_plugin.py). Four on two cores: a worker spends
# about a third of its time waiting (on a plugin process, a peer, an injected latency), which
# the others fill. Work-stealing, as the tests' lengths differ by a factor of a thousand (and
# the slow ones are handed out first).
# Coverage: every worker is measured through .coveragerc's `patch = subprocess`.
TEST_WORKERS ?= 4
XDIST   = -n $(TEST_WORKERS) --dist worksteal

# The full suite under coverage, then the figures; the last line is the run's wall time.
test: deps
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint && \
	rm -rf $(COVDATA) && mkdir -p $(COVDATA) && \
	COVERAGE_FILE=$(COVDATA)/cov $(if $(wildcard $(DOM0)/.installed),XAPISIM_DOM0_COVERAGE=$(COVDATA)/cov) \
	    $(NETNS) $(VENV)/bin/coverage run -m pytest -q $(XDIST) tests && \
	$(MAKE) --no-print-directory coverage; \
	status=$$?; wall=$$(( $$(date +%s) - start )); \
	printf 'make test: %dm%02ds wall\n' $$((wall / 60)) $$((wall % 60)); exit $$status

# The developers' loop, one to two minutes: lint, then every test not marked `slow` (the kill
# and fault matrices, the pack, everything on real peers), in parallel, without coverage.
check: lint
	$(NETNS) $(VENV)/bin/pytest -q $(XDIST) -m "not slow" tests

# The figure of the last `make test`; fails below .coveragerc's fail_under (full table in
# .coverage-data/report.txt).
coverage:
	@$(PY) tools/dom0_coverage.py $(COVDATA)/cov
	@! ls $(COVDATA)/cov.* >/dev/null 2>&1 || $(COVERAGE) combine -q
	@$(COVERAGE) report > $(COVDATA)/report.txt; status=$$?; \
	for part in client/ simulator/ dom0_plugins/; do \
	    printf 'coverage %-14s %s%%\n' $$part $$($(COVERAGE) report --fail-under=0 --include="$$part*" --format=total); \
	done; tail -n 1 $(COVDATA)/report.txt; exit $$status

# Checks that need no simulator: code that dom0's Python runs stays Python 3.6 (vermin); ruff's
# lint and format over the tree; mypy (pyproject.toml: the client strict, the simulator and
# dom0 with function bodies checked; the plugin file, which has no .py suffix, on its own); the
# dom0 package's imports go down its layers (docs/architecture.md).
lint: deps
	$(VENV)/bin/vermin --no-tips -q -t=3.6- --violations --eval-annotations \
	    dom0_plugins examples/drivers.d simulator/xapisim/plugin_runtime
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy -p xenvol -p xenvol_pack -p xapisim -p xenvol_dom0
	$(VENV)/bin/mypy -c "$$(cat dom0_plugins/etc/xapi.d/plugins/xenvol)"
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/test_layers.py

# The tools use dom0's Python that `make deps` built, as the tests do.
DOM0PY  = XAPISIM_DOM0_PYTHON=$(if $(wildcard $(DOM0)/.installed),$(CURDIR)/$(DOM0)/bin/python3)

demo: deps
	SM_TIMING=$(SM_TIMING) $(DOM0PY) $(NETNS) $(PY) tools/demo.py

# issue 12 figures next to goals (tools/bench.py, about five minutes; BENCH_ARGS="--concurrency 40"
# for a shorter run).
bench: deps
	$(DOM0PY) $(NETNS) $(PY) tools/bench.py $(BENCH_ARGS)

# N concurrent attaches then detaches of LUNs of one real iSCSI target (XENVOL_CONCURRENT_N, 200).
bench-concurrent: deps
	$(DOM0PY) $(NETNS) $(PY) tools/concurrent_attach.py

# The RPM, the signed update ISO and the public key, in out/. Signed with the release key in
# $$XENVOL_GPG_HOME named by $$XENVOL_GPG_KEY; `make pack TEST_KEY=1` signs with a throwaway
# test key instead (made once in out/test-signing, and said so).
pack: deps
	$(PY) -m xenvol_pack.build --out out $(if $(TEST_KEY),--test-key)

clean:
	rm -rf $(VENV) $(DOM0) .pytest_cache .coverage-data .mypy_cache .ruff_cache out
