"""driver_volume_type -> driver. Built-in drivers (xenvol_dom0/drivers/*.py) and vendors'
drivers (/etc/xenvol/drivers.d/*.py) are found the same way: every Driver subclass defined in
such a file with non-empty `volume_types`. A file that fails to load is reported and skipped."""

import glob
import importlib
import importlib.util
import os
import sys

from . import integrate, luns, paths, storage, undo, unsupported, vbd  # noqa: F401 (compensations)
from .drivers.base import Driver
from .errors import UNKNOWN_DRIVER, UNSUPPORTED_VOLUME, XenvolError

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List  # noqa: F401

_BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "drivers")


def _load_drivers():
    """undo.find's hook: a compensation not yet known is a driver's (a vendor's registers when
    its file loads), so a call recovering another's journal loads the drivers first. The
    package's own compensations register as the modules imported above load."""
    Registry()


class Registry:
    def __init__(self):
        # type: () -> None
        self.drivers = {}  # type: Dict[str, Driver]
        self.origin = {}  # type: Dict[str, str]
        self.broken = []  # type: List[Dict[str, str]]
        for path in sorted(glob.glob(os.path.join(_BUILTIN_DIR, "*.py"))):
            stem = os.path.basename(path)[:-3]
            if stem not in ("__init__", "base", "filebased"):
                self._load(path, "xenvol_dom0.drivers." + stem, "built-in")
        for path in sorted(glob.glob(os.path.join(paths.drivers_dir(), "*.py"))):
            stem = os.path.basename(path)[:-3]
            self._load(path, "xenvol_vendor_" + stem, "drivers.d")

    def _load(self, path, module_name, origin):
        # type: (str, str, str) -> None
        try:
            if origin == "built-in":
                module = importlib.import_module(module_name)
            else:
                spec = importlib.util.spec_from_file_location(module_name, path)
                if spec is None or spec.loader is None:
                    raise ValueError("cannot be loaded as a Python module")
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            found = [
                c
                for c in vars(module).values()
                if isinstance(c, type)
                and issubclass(c, Driver)
                and c is not Driver
                and c.__module__ == module_name
                and c.volume_types
            ]
            if not found:
                raise ValueError("defines no Driver subclass with volume_types")
            pending = {}
            for cls in found:
                driver = cls()
                for t in cls.volume_types:
                    if t in self.drivers or t in pending:
                        raise ValueError(
                            "driver_volume_type %r is already provided by %s"
                            % (t, self.origin.get(t, "this file"))
                        )
                    pending[t] = driver
        except Exception as e:  # one broken file must not break the others
            sys.modules.pop(module_name, None)
            self.broken.append(
                {"file": path, "origin": origin, "error": "%s: %s" % (type(e).__name__, e)}
            )
            return
        for t, driver in pending.items():
            self.drivers[t] = driver
            self.origin[t] = "%s %s" % (origin, path)

    def get(self, volume_type):
        # type: (str) -> Driver
        try:
            return self.drivers[volume_type]
        except KeyError:
            why = unsupported.reason(volume_type)
            if why:
                raise XenvolError(
                    UNSUPPORTED_VOLUME,
                    "connection_info.driver_volume_type: %r "
                    "is not supported on XenServer: %s" % (volume_type, why),
                    field="connection_info.driver_volume_type",
                ) from None
            raise XenvolError(
                UNKNOWN_DRIVER,
                "connection_info.driver_volume_type: no driver for "
                "%r (known: %s)" % (volume_type[:64], ", ".join(sorted(self.drivers))),
                field="connection_info.driver_volume_type",
                known=sorted(self.drivers),
            ) from None

    def describe(self):
        # type: () -> Dict[str, Any]
        return {
            "drivers": [
                {
                    "driver_volume_type": t,
                    "class": type(d).__name__,
                    "sr_type": d.sr_type,
                    "origin": self.origin[t],
                }
                for t, d in sorted(self.drivers.items())
            ],
            "failed": self.broken,
        }


undo.LOADER[0] = _load_drivers
