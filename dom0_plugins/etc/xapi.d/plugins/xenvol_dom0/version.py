"""The plugin's version (the project's one version string, in VERSION beside this file) and
its API level: MAJOR changes break callers, MINOR ones only add."""

import os

# The API level of each release (tests/test_release.py holds the same table and checks it
# against CHANGELOG.md: a level changes only with the version):
#   0.1.0  1.0  the first plugin functions (attach/detach/connect/disconnect_volume,
#               list_attachments, list_drivers, version)
#   0.2.0  1.2  1.1: every object result carries api_level and wait_limit; vm (uuid or
#               name) and route for attach_volume and detach_volume; recover, cancel, gc,
#               extend_volume, connector, prepare_host/release_host, reconcile, op_id.
#               1.2: check_config, probe, smoke_volume, version's `config`,
#               XENVOL_INVALID_CONFIG, XENVOL_OP_ID_CONFLICT (an op id
#               answers only a retry of its own call), recover's `damaged`, gc's kinds
#               `damaged` and `skipped` items, XENVOL_CANCELLED's rolled_back/left; cancel
#               before an operation starts.
API_LEVEL = "1.2"

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION")) as _fh:
    VERSION = _fh.read().strip()
