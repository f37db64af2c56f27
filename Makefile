# xenvol — developer entry points. Every target installs what it needs first.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
NETNS   := tools/in-private-netns

.PHONY: test demo pack bench deps sysdeps clean

# Two distributions from this repository: xenvol (client, CLI, pack tools) and xapisim
# (the simulator, whose xe is xapisim-xe); one after the other, so that an older single
# install's scripts are gone before xapisim installs its own.
$(STAMP): pyproject.toml simulator/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q -e ./simulator
	touch $(STAMP)

deps: $(STAMP) sysdeps

sysdeps:
	tools/install-debian-deps

test: deps
	$(VENV)/bin/vermin --no-tips -q -t=3.6- --violations --eval-annotations dom0_plugins examples/drivers.d
	$(NETNS) $(VENV)/bin/pytest -q tests

demo: deps
	$(NETNS) $(PY) tools/demo.py

# Cost of an attach and a detach: wall time and XAPI round trips (client vs plugin).
bench: deps
	$(NETNS) $(PY) tools/bench.py

# The RPM, the signed update ISO and the public key, in out/. Signed with the release key in
# $$XENVOL_GPG_HOME named by $$XENVOL_GPG_KEY; `make pack TEST_KEY=1` signs with a throwaway
# test key instead (made once in out/test-signing, and said so).
pack: deps
	$(PY) -m xenvol.pack.build --out out $(if $(TEST_KEY),--test-key)

clean:
	rm -rf $(VENV) .pytest_cache out
