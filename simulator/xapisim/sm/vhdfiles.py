"""SR directories of <vdi-uuid>.vhd / .raw files (FileSR and its NFS, SMB… kin): which
entries are VDIs, and their records."""

import re
import struct

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def vhd_virtual_size(footer):
    """Current size from a 512-byte VHD footer ('conectix' cookie), or None."""
    if len(footer) < 512 or footer[:8] != b"conectix":
        return None
    return struct.unpack(">Q", footer[48:56])[0]


def vdi_record(name, size, read_footer):
    """The VDI a directory entry stands for, or None. read_footer() gives the file's last
    512 bytes; a .vhd that is not a VHD is skipped, as vhd-util scan does."""
    stem, _dot, ext = name.rpartition(".")
    if ext not in ("vhd", "raw") or not UUID_RE.match(stem):
        return None
    virtual = vhd_virtual_size(read_footer()) if ext == "vhd" else size
    if virtual is None:
        return None
    return {
        "uuid": stem,
        "location": stem,
        "virtual_size": str(virtual),
        "physical_utilisation": str(size),
        "managed": True,
        "type": "user",
        "sm_config": {"type": ext} if ext == "raw" else {},
    }
