"""A userspace iSCSI initiator over libiscsi (Debian libiscsi7) through ctypes.

Used by the simulated `iscsi` storage manager so that logins, CHAP and LUN lookups happen for
real against a target such as tgt. Errors carry libiscsi's own text."""

import ctypes
import ctypes.util
import threading
from typing import Dict

_P, _S, _I = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
_lib = None
_lock = threading.Lock()

SESSION_NORMAL = 2
HEADER_DIGEST_NONE_CRC32C = 2
DEVICE_TYPE_DIRECT_ACCESS = 0
PAGE_DEVICE_IDENTIFICATION = 0x83
DESIGNATOR_T10 = 1
DESIGNATOR_NAA = 3


class ISCSIError(Exception):
    pass


class _Designator(ctypes.Structure):
    pass


_Designator._fields_ = [
    ("next", ctypes.POINTER(_Designator)),
    ("protocol_identifier", _I),
    ("code_set", _I),
    ("piv", _I),
    ("association", _I),
    ("designator_type", _I),
    ("designator_length", _I),
    ("designator", ctypes.POINTER(ctypes.c_ubyte)),
]


class _DeviceIdentification(ctypes.Structure):
    _fields_ = [
        ("qualifier", _I),
        ("device_type", _I),
        ("pagecode", _I),
        ("designators", ctypes.POINTER(_Designator)),
    ]


class _Standard(ctypes.Structure):
    _fields_ = [("qualifier", _I), ("device_type", _I)]


class _ReadCapacity10(ctypes.Structure):
    _fields_ = [("lba", ctypes.c_uint32), ("block_size", ctypes.c_uint32)]


class _DiscoveryPortal(ctypes.Structure):
    pass


_DiscoveryPortal._fields_ = [("next", ctypes.POINTER(_DiscoveryPortal)), ("portal", _S)]


class _DiscoveryAddress(ctypes.Structure):
    pass


_DiscoveryAddress._fields_ = [
    ("next", ctypes.POINTER(_DiscoveryAddress)),
    ("target_name", _S),
    ("portals", ctypes.POINTER(_DiscoveryPortal)),
]


def lib():
    global _lib
    with _lock:
        if _lib is None:
            name = ctypes.util.find_library("iscsi") or "libiscsi.so.7"
            try:
                L = ctypes.CDLL(name)
            except OSError as e:
                raise ISCSIError("libiscsi is not installed (%s)" % e) from None
            sig = {
                "iscsi_create_context": (_P, [_S]),
                "iscsi_destroy_context": (_I, [_P]),
                "iscsi_get_error": (_S, [_P]),
                "iscsi_set_targetname": (_I, [_P, _S]),
                "iscsi_set_session_type": (_I, [_P, _I]),
                "iscsi_set_header_digest": (_I, [_P, _I]),
                "iscsi_set_initiator_username_pwd": (_I, [_P, _S, _S]),
                "iscsi_set_target_username_pwd": (_I, [_P, _S, _S]),
                "iscsi_set_timeout": (_I, [_P, _I]),
                "iscsi_connect_sync": (_I, [_P, _S]),
                "iscsi_login_sync": (_I, [_P]),
                "iscsi_logout_sync": (_I, [_P]),
                "iscsi_discovery_sync": (ctypes.POINTER(_DiscoveryAddress), [_P]),
                "iscsi_free_discovery_data": (None, [_P, ctypes.POINTER(_DiscoveryAddress)]),
                "iscsi_reportluns_sync": (_P, [_P, _I, _I]),
                "iscsi_inquiry_sync": (_P, [_P, _I, _I, _I, _I]),
                "iscsi_readcapacity10_sync": (_P, [_P, _I, _I, _I]),
                "scsi_datain_unmarshall": (_P, [_P]),
                "scsi_free_scsi_task": (None, [_P]),
            }
            for fn, (res, args) in sig.items():
                f = getattr(L, fn)
                f.restype, f.argtypes = res, args
            _lib = L
    return _lib


class Session:
    """One login to one target (or a discovery session when iqn is None)."""

    def __init__(self, initiator, portal, iqn, chap=None, mutual=None, timeout=5):
        self.L = lib()
        self.ctx = self.L.iscsi_create_context(initiator.encode())
        if not self.ctx:
            raise ISCSIError("cannot create an iSCSI context")
        ok = False
        try:
            L, c = self.L, self.ctx
            L.iscsi_set_timeout(c, timeout)
            L.iscsi_set_header_digest(c, HEADER_DIGEST_NONE_CRC32C)
            if iqn:
                L.iscsi_set_targetname(c, iqn.encode())
                L.iscsi_set_session_type(c, SESSION_NORMAL)
            else:
                L.iscsi_set_session_type(c, 1)
            if chap:
                L.iscsi_set_initiator_username_pwd(c, chap[0].encode(), chap[1].encode())
            if mutual:
                L.iscsi_set_target_username_pwd(c, mutual[0].encode(), mutual[1].encode())
            if L.iscsi_connect_sync(c, portal.encode()) != 0:
                raise ISCSIError("connect: " + self.error())
            if L.iscsi_login_sync(c) != 0:
                raise ISCSIError("login: " + self.error())
            ok = True
        finally:
            if not ok:
                self.L.iscsi_destroy_context(self.ctx)

    def error(self):
        e = self.L.iscsi_get_error(self.ctx)
        return e.decode(errors="replace") if e else "unknown iSCSI error"

    def close(self):
        if self.ctx:
            self.L.iscsi_logout_sync(self.ctx)
            self.L.iscsi_destroy_context(self.ctx)
            self.ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _task(self, send, what):
        """Run a command; (task, unmarshalled data). The first commands after a login meet
        a UNIT ATTENTION (CHECK CONDITION), which a retry clears, as the kernel does."""
        for _attempt in range(3):
            task = send()
            if not task:
                raise ISCSIError("%s: %s" % (what, self.error()))
            # struct scsi_task starts with the SCSI status; only GOOD (0) carries data.
            status = ctypes.c_int.from_address(task).value
            if status == 0:
                break
            self.L.scsi_free_scsi_task(task)
        else:
            raise ISCSIError("%s: SCSI status %d" % (what, status))
        data = self.L.scsi_datain_unmarshall(task)
        if not data:
            self.L.scsi_free_scsi_task(task)
            raise ISCSIError("%s: cannot decode the reply" % what)
        return task, data

    def targets(self):
        """SendTargets discovery: [(iqn, [portal, …])]."""
        head = self.L.iscsi_discovery_sync(self.ctx)
        if not head:
            raise ISCSIError("discovery: " + self.error())
        out, node = [], head
        while node:
            portals, p = [], node.contents.portals
            while p:
                portals.append(p.contents.portal.decode())
                p = p.contents.next
            out.append((node.contents.target_name.decode(), portals))
            node = node.contents.next
        self.L.iscsi_free_discovery_data(self.ctx, head)
        return out

    def luns(self):
        task, data = self._task(
            lambda: self.L.iscsi_reportluns_sync(self.ctx, 0, 16384), "REPORT LUNS"
        )
        try:
            num = ctypes.c_uint32.from_address(data).value
            arr = (ctypes.c_uint16 * num).from_address(data + 4)
            return list(arr)
        finally:
            self.L.scsi_free_scsi_task(task)

    def device_type(self, lun):
        task, data = self._task(
            lambda: self.L.iscsi_inquiry_sync(self.ctx, lun, 0, 0, 255), "INQUIRY"
        )
        try:
            return _Standard.from_address(data).device_type
        finally:
            self.L.scsi_free_scsi_task(task)

    def scsi_id(self, lun):
        """The id `scsi_id -g` would print: '3'+hex for an NAA designator, else '1'+T10 text."""
        task, data = self._task(
            lambda: self.L.iscsi_inquiry_sync(self.ctx, lun, 1, PAGE_DEVICE_IDENTIFICATION, 255),
            "INQUIRY VPD 0x83",
        )
        try:
            ident = _DeviceIdentification.from_address(data)
            found: Dict[int, bytes] = {}
            d = ident.designators
            while d:
                dd = d.contents
                raw = bytes(dd.designator[: dd.designator_length])
                found.setdefault(dd.designator_type, raw)
                d = dd.next
            if DESIGNATOR_NAA in found:
                return "3" + found[DESIGNATOR_NAA].hex()
            if DESIGNATOR_T10 in found:
                text = found[DESIGNATOR_T10].decode("ascii", "replace").strip("\x00 ")
                return "1" + "_".join(text.split())
            raise ISCSIError("LUN %d has no device identifier" % lun)
        finally:
            self.L.scsi_free_scsi_task(task)

    def size(self, lun):
        # READ CAPACITY(10) covers LUNs under 2 TiB, plenty for test volumes.
        task, data = self._task(
            lambda: self.L.iscsi_readcapacity10_sync(self.ctx, lun, 0, 0), "READ CAPACITY(10)"
        )
        try:
            rc = _ReadCapacity10.from_address(data)
            return (rc.lba + 1) * rc.block_size
        finally:
            self.L.scsi_free_scsi_task(task)
