# xenvol — developer entry points. Every target installs what it needs first.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
NETNS   := tools/in-private-netns

.PHONY: test demo deps sysdeps clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

deps: $(STAMP) sysdeps

sysdeps:
	tools/install-debian-deps

test: deps
	$(VENV)/bin/vermin --no-tips -q -t=3.6- --violations --eval-annotations dom0_plugins
	$(NETNS) $(VENV)/bin/pytest -q tests

demo: deps
	$(NETNS) $(PY) tools/demo.py

clean:
	rm -rf $(VENV) .pytest_cache
