"""Where things live in dom0. The root is derived from the plugin's own location
(<root>/etc/xapi.d/plugins/xenvol): / on a real host, a host root in the simulator."""
import os
import sys


def host_root():
    plugin = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    parts = plugin.split(os.sep)
    if len(parts) >= 4 and parts[-4:-1] == ["etc", "xapi.d", "plugins"]:
        return os.sep.join(parts[:-4]) or os.sep
    return os.sep


def under_root(path):
    return os.path.join(host_root(), path.lstrip("/"))


def log_file():
    return under_root("/var/log/xenvol.log")


def lock_dir():
    return under_root("/var/lock/xenvol")


def drivers_dir():
    """Third-party drivers: one Python file per driver."""
    return under_root("/etc/xenvol/drivers.d")


def config_file():
    return under_root("/etc/xenvol/xenvol.conf")
