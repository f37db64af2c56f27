# xenvol — developer entry points. Every target installs what it needs first.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
NETNS   := tools/in-private-netns
SM_TIMING ?= fast

.PHONY: test demo pack bench deps sysdeps clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

deps: $(STAMP) sysdeps

sysdeps:
	tools/install-debian-deps

test: deps
	$(VENV)/bin/vermin --no-tips -q -t=3.6- --violations --eval-annotations dom0_plugins examples/drivers.d
	$(NETNS) $(VENV)/bin/pytest -q tests

demo: deps
	SM_TIMING=$(SM_TIMING) $(NETNS) $(PY) tools/demo.py

# Cost of an attach and a detach: wall time and XAPI round trips (client vs plugin).
bench: deps
	$(NETNS) $(PY) tools/bench.py

# The RPM, the signed update ISO and the public key, in out/ (verify: .venv/bin/xenvol pack verify).
pack: deps
	$(PY) -m xenvol.pack.build --out out

clean:
	rm -rf $(VENV) .pytest_cache out
