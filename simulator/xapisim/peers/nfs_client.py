"""A userspace NFS client over libnfs (Debian libnfs13) through ctypes.

Used by the simulated `nfs` storage manager: mounting the export, listing the SR directory
and reading VHD footers all happen for real against an NFS server such as nfs-ganesha."""

import ctypes
import ctypes.util
import os
import threading

_P, _S, _I = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
_lib = None
_lock = threading.Lock()

NF3DIR = 2


class NFSError(Exception):
    pass


class _Dirent(ctypes.Structure):
    pass


_Dirent._fields_ = [
    ("next", ctypes.POINTER(_Dirent)),
    ("name", _S),
    ("inode", ctypes.c_uint64),
    ("type", ctypes.c_uint32),
    ("mode", ctypes.c_uint32),
    ("size", ctypes.c_uint64),
]


class _Stat64(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_uint64)
        for n in (
            "dev",
            "ino",
            "mode",
            "nlink",
            "uid",
            "gid",
            "rdev",
            "size",
            "blksize",
            "blocks",
            "atime",
            "mtime",
            "ctime",
            "atime_nsec",
            "mtime_nsec",
            "ctime_nsec",
            "used",
        )
    ]


class _Url(ctypes.Structure):
    _fields_ = [("server", _S), ("path", _S), ("file", _S)]


def lib():
    global _lib
    with _lock:
        if _lib is None:
            name = ctypes.util.find_library("nfs") or "libnfs.so.13"
            try:
                L = ctypes.CDLL(name)
            except OSError as e:
                raise NFSError("libnfs is not installed (%s)" % e) from None
            sig = {
                "nfs_init_context": (_P, []),
                "nfs_destroy_context": (None, [_P]),
                "nfs_get_error": (_S, [_P]),
                "nfs_set_version": (_I, [_P, _I]),
                "nfs_set_timeout": (None, [_P, _I]),
                "nfs_mount": (_I, [_P, _S, _S]),
                "nfs_umount": (_I, [_P]),
                "nfs_stat64": (_I, [_P, _S, ctypes.POINTER(_Stat64)]),
                "nfs_opendir": (_I, [_P, _S, ctypes.POINTER(_P)]),
                "nfs_readdir": (ctypes.POINTER(_Dirent), [_P, _P]),
                "nfs_closedir": (None, [_P, _P]),
                "nfs_open": (_I, [_P, _S, _I, ctypes.POINTER(_P)]),
                "nfs_close": (_I, [_P, _P]),
                "nfs_pread": (_I, [_P, _P, ctypes.c_uint64, ctypes.c_uint64, _P]),
                "nfs_parse_url_dir": (ctypes.POINTER(_Url), [_P, _S]),
                "nfs_destroy_url": (None, [ctypes.POINTER(_Url)]),
            }
            for fn, (res, args) in sig.items():
                f = getattr(L, fn)
                f.restype, f.argtypes = res, args
            _lib = L
    return _lib


class Mount:
    """One mounted export: mount(server, export, version) then paths relative to it."""

    def __init__(self, server, export, version=3, nfsport=0, mountport=0, timeout_ms=5000):
        self.L = lib()
        self.ctx = self.L.nfs_init_context()
        if not self.ctx:
            raise NFSError("cannot create an NFS context")
        ok = False
        try:
            self.L.nfs_set_timeout(self.ctx, timeout_ms)
            # Ports and version go through URL arguments, the one way libnfs 4 sets ports.
            query = "version=%d" % (4 if str(version).startswith("4") else 3)
            if nfsport:
                query += "&nfsport=%d" % int(nfsport)
            if mountport:
                query += "&mountport=%d" % int(mountport)
            host = "[%s]" % server if ":" in server else server
            url = self.L.nfs_parse_url_dir(
                self.ctx,
                (
                    "nfs://%s%s?%s"
                    % (host, export if export.startswith("/") else "/" + export, query)
                ).encode(),
            )
            if not url:
                raise NFSError("Invalid NFS location: " + self.error())
            try:
                rc = self.L.nfs_mount(self.ctx, url.contents.server, url.contents.path)
            finally:
                self.L.nfs_destroy_url(url)
            if rc != 0:
                raise NFSError("Failed to mount nfs share : " + self.error())
            ok = True
        finally:
            if not ok:
                self.L.nfs_destroy_context(self.ctx)

    def error(self):
        e = self.L.nfs_get_error(self.ctx)
        return e.decode(errors="replace") if e else "unknown NFS error"

    def close(self):
        if self.ctx:
            self.L.nfs_destroy_context(self.ctx)
            self.ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def is_dir(self, path):
        st = _Stat64()
        if self.L.nfs_stat64(self.ctx, path.encode(), ctypes.byref(st)) != 0:
            return False
        return (st.mode & 0o170000) == 0o040000

    def listdir(self, path):
        """[(name, is_dir, size)] of a directory."""
        handle = _P()
        if self.L.nfs_opendir(self.ctx, path.encode(), ctypes.byref(handle)) != 0:
            raise NFSError("opendir %s: %s" % (path, self.error()))
        out = []
        try:
            while True:
                ent = self.L.nfs_readdir(self.ctx, handle)
                if not ent:
                    break
                name = ent.contents.name.decode()
                if name not in (".", ".."):
                    out.append((name, ent.contents.type == NF3DIR, ent.contents.size))
        finally:
            self.L.nfs_closedir(self.ctx, handle)
        return out

    def read(self, path, offset, count):
        fh = _P()
        if self.L.nfs_open(self.ctx, path.encode(), os.O_RDONLY, ctypes.byref(fh)) != 0:
            raise NFSError("open %s: %s" % (path, self.error()))
        try:
            buf = ctypes.create_string_buffer(count)
            n = self.L.nfs_pread(self.ctx, fh, offset, count, buf)
            if n < 0:
                raise NFSError("read %s: %s" % (path, self.error()))
            return buf.raw[:n]
        finally:
            self.L.nfs_close(self.ctx, fh)
