"""The plugin's version (the project's one version string, in VERSION beside this file) and
its API level: MAJOR changes break callers, MINOR ones only add."""

import os

# 1.1: every object result carries api_level and wait_limit; vm (uuid or name) and route
# for attach_volume and detach_volume.
API_LEVEL = "1.1"

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION")) as _fh:
    VERSION = _fh.read().strip()
