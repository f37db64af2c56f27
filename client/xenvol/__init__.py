"""xenvol: attach Cinder-style volumes to XenServer / XCP-ng VMs through dom0 plugins."""

import logging

from . import errors
from .adapter import ComputeVolumeDriver, XenConnector, XenVolumeDriver
from .client import Client
from .errors import ConnectionFailed
from .records import Attachment, Connection
from .version import __version__

# The `xenvol` logger names every call's op id (INFO), its failures (WARNING); silent until
# the application configures logging.
logging.getLogger("xenvol").addHandler(logging.NullHandler())

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
