"""One log line per step in /var/log/xenvol.log, secrets masked and scrubbed."""
import json
import logging
import os

from . import paths
from .redact import SCRUB, mask

_logger = None


def logger():
    global _logger
    if _logger is None:
        _logger = logging.getLogger("xenvol")
        _logger.setLevel(logging.INFO)
        _logger.propagate = False
        path = paths.log_file()
        try:
            if not os.path.isdir(os.path.dirname(path)):
                os.makedirs(os.path.dirname(path))
            handler = logging.FileHandler(path)
        except (IOError, OSError):
            handler = logging.NullHandler()
        handler.setFormatter(logging.Formatter(
            "%(asctime)s xenvol[%(process)d] %(levelname)s %(message)s"))
        _logger.addHandler(handler)
    return _logger


def step(message, **fields):
    text = message
    if fields:
        text += " " + json.dumps(mask(fields), sort_keys=True, default=str)
    logger().info(SCRUB(text))


def warning(message, **fields):
    text = message
    if fields:
        text += " " + json.dumps(mask(fields), sort_keys=True, default=str)
    logger().warning(SCRUB(text))
