"""Disk device numbers and names, as xapi's Device_number understands them."""
import re

MAX_DEVICE = 254


def number(name):
    """0-based disk number of '3', 'xvdd', 'hdd', 'sdd', 'xvdaa'; None if not a device name."""
    if re.match(r"^[0-9]+$", name):
        return int(name)
    m = re.match(r"^(?:xvd|hd|sd)([a-z]+)$", name)
    if not m:
        return None
    n = 0
    for ch in m.group(1):
        n = n * 26 + (ord(ch) - ord("a") + 1)
    return n - 1


def xvd(n):
    """Linux name of disk n on a PV guest: xvda … xvdz, xvdaa …"""
    letters = ""
    n += 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return "xvd" + letters
