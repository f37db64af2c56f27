"""xenvol: attach Cinder-style volumes to XenServer / XCP-ng VMs through dom0 plugins."""

import logging
import os

# The one version string lives beside the dom0 plugin (it ships in the RPM); the package
# metadata is built from it, and a source checkout reads it directly.
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

# The `xenvol` logger names every call's op id (INFO), its failures (WARNING); silent until
# the application configures logging.
logging.getLogger("xenvol").addHandler(logging.NullHandler())


from . import errors  # noqa: E402
from .adapter import ComputeVolumeDriver, XenConnector, XenVolumeDriver  # noqa: E402
from .client import Client  # noqa: E402
from .errors import ConnectionFailed  # noqa: E402
from .records import Attachment, Connection  # noqa: E402

__all__ = [
    "Attachment",
    "Client",
    "ComputeVolumeDriver",
    "Connection",
    "ConnectionFailed",
    "XenConnector",
    "XenVolumeDriver",
    "errors",
    "__version__",
]
