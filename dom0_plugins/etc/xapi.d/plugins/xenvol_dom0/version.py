"""The plugin's version (the project's one version string, in VERSION beside this file) and
its API level: MAJOR changes break callers, MINOR ones only add."""
import os

API_LEVEL = "1.0"

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION")) as _fh:
    VERSION = _fh.read().strip()
