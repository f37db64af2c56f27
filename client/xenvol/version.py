"""The client's version: a leaf, so that any module may read it without importing the package.

The one version string lives beside the dom0 plugin (it ships in the RPM); the package
metadata is built from it, and a source checkout reads it directly."""

import os

_SOURCE_VERSION = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "dom0_plugins",
    "etc",
    "xapi.d",
    "plugins",
    "xenvol_dom0",
    "VERSION",
)


def _version() -> str:
    if os.path.exists(_SOURCE_VERSION):
        with open(_SOURCE_VERSION) as fh:
            return fh.read().strip()
    from importlib.metadata import version

    return version("xenvol")


__version__ = _version()
