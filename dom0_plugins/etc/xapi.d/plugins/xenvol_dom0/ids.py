"""Fresh ids without the uuid module: on dom0's Python 3.6 its import loads ctypes and runs
ldconfig (ctypes.util.find_library) to look for libuuid, which costs a plugin run more than
anything it does before its first XAPI call."""

import binascii
import os


def random_uuid():
    # type: () -> str
    """str(uuid.uuid4()): RFC 4122 §4.4, 122 random bits from os.urandom."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = binascii.hexlify(bytes(b)).decode("ascii")
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
