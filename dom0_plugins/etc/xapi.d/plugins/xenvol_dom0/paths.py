"""Where things live in dom0. Plain absolute paths: a plugin runs in dom0's file system (the
simulator gives each host's plugin its own /etc and /var in a private mount namespace)."""

LOG_FILE = "/var/log/xenvol.log"
LOCK_DIR = "/var/lock/xenvol"
DRIVERS_DIR = "/etc/xenvol/drivers.d"  # third-party drivers: one Python file per driver
CONFIG_FILE = "/etc/xenvol/xenvol.conf"
# One intent journal per running (or dead, not yet recovered) operation; kept results of
# finished ones, by operation id.
JOURNAL_DIR = "/var/lib/xenvol/ops"
RESULTS_DIR = "/var/lib/xenvol/results"
# The kernel's id of this boot: a journal from another boot belongs to a dead process.
BOOT_ID = "/proc/sys/kernel/random/boot_id"


def log_file():
    # type: () -> str
    return LOG_FILE


def lock_dir():
    # type: () -> str
    return LOCK_DIR


def drivers_dir():
    # type: () -> str
    return DRIVERS_DIR


def config_file():
    # type: () -> str
    return CONFIG_FILE


def journal_dir():
    # type: () -> str
    return JOURNAL_DIR


def results_dir():
    # type: () -> str
    return RESULTS_DIR


def boot_id_file():
    # type: () -> str
    return BOOT_ID
