"""One log line per step in /var/log/xenvol.log, secrets masked and scrubbed."""

import json
import logging
import logging.handlers
import os

from . import paths, settings
from .redact import SCRUB, mask

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional  # noqa: F401

_logger = None  # type: Optional[logging.Logger]


def logger():
    # type: () -> logging.Logger
    global _logger
    if _logger is None:
        _logger = logging.getLogger("xenvol")
        _logger.setLevel(logging.INFO)
        _logger.propagate = False
        path = paths.log_file()
        try:
            if not os.path.isdir(os.path.dirname(path)):
                os.makedirs(os.path.dirname(path))
            handler = logging.FileHandler(path)  # type: logging.Handler
        except OSError:
            handler = logging.NullHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s xenvol[%(process)d] %(levelname)s %(message)s")
        )
        _logger.addHandler(handler)
        _add_syslog(_logger)
    return _logger


def _add_syslog(target):
    # type: (logging.Logger) -> None
    """The same lines to syslog (daemon facility), so a pool's remote syslog forwards them;
    skipped where dom0 has no syslog socket."""
    address = settings.read()[0]["syslog_socket"]  # an invalid file is refused later
    if not address or not os.path.exists(address):
        return
    try:
        handler = logging.handlers.SysLogHandler(
            address=address, facility=logging.handlers.SysLogHandler.LOG_DAEMON
        )
    except OSError:
        return
    handler.setFormatter(logging.Formatter("xenvol[%(process)d]: %(levelname)s %(message)s"))
    target.addHandler(handler)


def step(message, **fields):
    # type: (str, **Any) -> None
    text = message
    if fields:
        text += " " + json.dumps(mask(fields), sort_keys=True, default=str)
    logger().info(SCRUB(text))


def warning(message, **fields):
    # type: (str, **Any) -> None
    text = message
    if fields:
        text += " " + json.dumps(mask(fields), sort_keys=True, default=str)
    logger().warning(SCRUB(text))
