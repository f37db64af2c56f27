"""The pool master's host ref per pool URL, kept on disk so that the first client of a
process skips session.get_this_host. XAPI refs are database keys that last as long as the
host's record; a stale one answers HANDLE_INVALID and the caller looks it up again.

The file ($XDG_CACHE_HOME/xenvol/hosts.json, else ~/.cache/xenvol/hosts.json) holds URLs and
refs only, never a credential; it is 0600 and replaced atomically. XENVOL_HOST_CACHE=off
turns it off, XENVOL_HOST_CACHE=PATH names another file. It is only an optimisation: any
error reading or writing it is ignored."""

import json
import os
import tempfile
from typing import Dict, Optional

ENV = "XENVOL_HOST_CACHE"
OFF = ("0", "off", "no", "false")
MAX_ENTRIES = 64


def default_path() -> Optional[str]:
    setting = os.environ.get(ENV, "")
    if setting.lower() in OFF:
        return None
    if setting:
        return setting
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xenvol", "hosts.json")


class HostCache:
    def __init__(self, path: str) -> None:
        self.path = path

    def get(self, url: str) -> Optional[str]:
        return self._read().get(url)

    def put(self, url: str, ref: str) -> None:
        masters = self._read()
        if masters.get(url) == ref:
            return
        masters.pop(url, None)
        masters[url] = ref  # newest last; the oldest go beyond MAX_ENTRIES
        self._write(dict(list(masters.items())[-MAX_ENTRIES:]))

    def drop(self, url: str) -> None:
        masters = self._read()
        if masters.pop(url, None) is not None:
            self._write(masters)

    def _read(self) -> Dict[str, str]:
        try:
            with open(self.path) as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            return {}
        masters = doc.get("masters") if isinstance(doc, dict) else None
        if not isinstance(masters, dict):
            return {}
        return dict(
            (k, v)
            for k, v in masters.items()
            if isinstance(k, str) and isinstance(v, str) and v.startswith("OpaqueRef:")
        )

    def _write(self, masters: Dict[str, str]) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        tmp = None
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".hosts.", suffix=".tmp", dir=folder)  # 0600
            with os.fdopen(fd, "w") as fh:
                json.dump({"version": 1, "masters": masters}, fh)
            os.replace(tmp, self.path)
        except OSError:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
