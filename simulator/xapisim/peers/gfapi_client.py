"""A userspace GlusterFS client over libgfapi (Debian libgfapi0) through ctypes.

Used by the simulated `glusterfs` storage manager: fetching the volfile from glusterd,
listing the SR directory and reading VHD footers all happen for real against glusterd and
its bricks, where dom0 would mount the volume with mount.glusterfs (FUSE)."""

import ctypes
import ctypes.util
import os
import struct
import threading

_P, _S, _I, _SZ = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t
_OFF = ctypes.c_int64
_lib = None
_lock = threading.Lock()

GLUSTERD_PORT = 24007  # glusterfs GF_DEFAULT_BASE_PORT, what a mount without a port uses
DT_DIR = 4
# struct dirent on Linux/glibc (x86_64, aarch64): d_ino, d_off, d_reclen, d_type, d_name[256]
_DIRENT = struct.Struct("=QqHB256s")


class GlusterError(Exception):
    pass


def lib():
    global _lib
    with _lock:
        if _lib is None:
            name = ctypes.util.find_library("gfapi") or "libgfapi.so.0"
            try:
                L = ctypes.CDLL(name, use_errno=True)
            except OSError as e:
                raise GlusterError("libgfapi is not installed (%s)" % e) from None
            # glusterfs api/src/glfs.h; pread/pwrite have the 6.0 signatures (pre/post stat).
            sig = {
                "glfs_new": (_P, [_S]),
                "glfs_fini": (_I, [_P]),
                "glfs_init": (_I, [_P]),
                "glfs_set_volfile_server": (_I, [_P, _S, _S, _I]),
                "glfs_set_logging": (_I, [_P, _S, _I]),
                "glfs_opendir": (_P, [_P, _S]),
                "glfs_closedir": (_I, [_P]),
                "glfs_readdir_r": (_I, [_P, _P, ctypes.POINTER(_P)]),
                "glfs_open": (_P, [_P, _S, _I]),
                "glfs_creat": (_P, [_P, _S, _I, ctypes.c_uint]),
                "glfs_close": (_I, [_P]),
                "glfs_lseek": (_OFF, [_P, _OFF, _I]),
                "glfs_pread": (ctypes.c_ssize_t, [_P, _P, _SZ, _OFF, _I, _P]),
                "glfs_pwrite": (ctypes.c_ssize_t, [_P, _P, _SZ, _OFF, _I, _P, _P]),
                "glfs_mkdir": (_I, [_P, _S, ctypes.c_uint]),
                "glfs_unlink": (_I, [_P, _S]),
            }
            for fn, (res, args) in sig.items():
                f = getattr(L, fn)
                f.restype, f.argtypes = res, args
            _lib = L
    return _lib


def _oserror(what):
    err = ctypes.get_errno()
    return GlusterError("%s: %s" % (what, os.strerror(err) if err else "failed"))


class Volume:
    """One volume fetched from the first volfile server that answers, tried in order
    (gfapi glfs-mgmt.c mgmt_rpc_notify: each server once, then glfs_init fails)."""

    def __init__(self, servers, volume, logfile, port=GLUSTERD_PORT):
        self.L = lib()
        self.fs = self.L.glfs_new(volume.encode())
        if not self.fs:
            raise _oserror("glfs_new %s" % volume)
        ok = False
        try:
            for host in servers:
                if self.L.glfs_set_volfile_server(self.fs, b"tcp", host.encode(), port) != 0:
                    raise _oserror("volfile server %s" % host)
            # gfapi's default log is under /var/log/glusterfs: give it the caller's.
            self.L.glfs_set_logging(self.fs, logfile.encode(), 7)  # GF_LOG_INFO
            if self.L.glfs_init(self.fs) != 0:
                raise _oserror("glfs_init %s" % volume)
            ok = True
        finally:
            if not ok:
                self.close()

    def close(self):
        if self.fs:
            fs, self.fs = self.fs, None
            # gfapi 10's glfs_fini waits 10 s for a frame it never unwinds (glfs.c
            # pub_glfs_fini countdown): it finishes on a thread of its own, not a daemon one,
            # so the interpreter joins it before unloading anything at exit.
            threading.Thread(target=self.L.glfs_fini, args=(fs,), name="glfs_fini").start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def listdir(self, path):
        """[(name, is_dir, size)] of a directory."""
        d = self.L.glfs_opendir(self.fs, path.encode())
        if not d:
            raise _oserror("opendir %s" % path)
        names = []
        try:
            buf = ctypes.create_string_buffer(_DIRENT.size + 8)
            res = _P()
            while True:
                if self.L.glfs_readdir_r(d, buf, ctypes.byref(res)) != 0:
                    raise _oserror("readdir %s" % path)
                if not res.value:
                    break
                _ino, _off, _rl, dtype, raw = _DIRENT.unpack_from(buf.raw)
                name = raw.split(b"\0", 1)[0].decode()
                if name not in (".", ".."):
                    names.append((name, dtype == DT_DIR))
        finally:
            self.L.glfs_closedir(d)
        return [
            (n, is_dir, 0 if is_dir else self.size(path.rstrip("/") + "/" + n))
            for n, is_dir in names
        ]

    def is_dir(self, path):
        d = self.L.glfs_opendir(self.fs, path.encode())
        if not d:
            return False
        self.L.glfs_closedir(d)
        return True

    def _open(self, path, flags=os.O_RDONLY):
        fd = self.L.glfs_open(self.fs, path.encode(), flags)
        if not fd:
            raise _oserror("open %s" % path)
        return fd

    def size(self, path):
        fd = self._open(path)
        try:
            return self.L.glfs_lseek(fd, 0, os.SEEK_END)
        finally:
            self.L.glfs_close(fd)

    def read(self, path, offset, count):
        fd = self._open(path)
        try:
            buf = ctypes.create_string_buffer(count)
            n = self.L.glfs_pread(fd, buf, count, offset, 0, None)
            if n < 0:
                raise _oserror("read %s" % path)
            return buf.raw[:n]
        finally:
            self.L.glfs_close(fd)

    # Writers: the peer uses them to lay out SRs through the volume, never on the brick.
    def mkdir(self, path, mode=0o755):
        if self.L.glfs_mkdir(self.fs, path.encode(), mode) != 0:
            raise _oserror("mkdir %s" % path)

    def write(self, path, data, offset=0):
        fd = self.L.glfs_creat(self.fs, path.encode(), os.O_WRONLY, 0o644)
        if not fd:
            raise _oserror("create %s" % path)
        try:
            if self.L.glfs_pwrite(fd, data, len(data), offset, 0, None, None) != len(data):
                raise _oserror("write %s" % path)
        finally:
            self.L.glfs_close(fd)

    def unlink(self, path):
        if self.L.glfs_unlink(self.fs, path.encode()) != 0:
            raise _oserror("unlink %s" % path)
