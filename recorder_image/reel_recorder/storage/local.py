"""LocalStore: objects as files under a directory (the demo, tests, users without S3).

Keys are checked twice: lexically (no absolute keys, no ``..``, see keys.key_problem) and while walking the
directory tree, where every folder is opened relative to its parent with O_NOFOLLOW, so a symlink placed
anywhere inside the root (even between the check and the write) cannot redirect a write outside it.
Files are written to a temporary name in their final folder and renamed into place: a reader never sees
half an object. Write-once objects (``put_file``, ``put_bytes_once``: segments, MP4s) are linked into place
instead (``linkat``, which fails when the name exists): never over an existing object (base.py says what happens
then). On a filesystem without hard links the store looks before it renames (another writer may come between
the two; logged once).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import threading
from pathlib import Path

from .base import CHUNK, ObjectInfo, Store
from .errors import StoreError

log = logging.getLogger("reel.storage")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike, *, name: str = "primary", key_prefix: str = "",
                 fsync: bool = True) -> None:
        super().__init__(name, key_prefix)
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.fsync = fsync
        self._counter = 0
        self._lock = threading.Lock()
        self._links = True  # False once the filesystem refused a hard link (write-once falls back, docstring)

    def describe(self) -> str:
        return f"file://{self.root}"

    # -- helpers --------------------------------------------------------------------------------------------

    def _os_error(self, what: str, err: OSError) -> StoreError:
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return self.error(f"{what}: permission denied ({err.strerror}): make the directory writable "
                              "for the recorder's user", kind="config", code="AccessDenied")
        if err.errno == errno.ENOSPC:
            return self.error(f"{what}: no space left on device", kind="transient", code="NoSpace")
        if err.errno == errno.ELOOP:
            return self.error(f"{what}: a symlink inside the store would redirect the write",
                              kind="object", code="InvalidKey")
        if err.errno == errno.ENOTDIR:
            return self.error(f"{what}: a path component is a file, not a folder", kind="object",
                              code="InvalidKey")
        return self.error(f"{what}: {err.strerror or err}", kind="transient", code=errno.errorcode.get(
            err.errno or 0, "OSError"))

    def _open_root(self) -> int:
        try:
            return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise self.error("directory does not exist: create it or mount a volume there", kind="config",
                             code="NoSuchBucket") from None
        except NotADirectoryError:
            raise self.error("not a directory", kind="config", code="NoSuchBucket") from None
        except OSError as e:
            raise self._os_error("cannot open the directory", e) from None

    def _open_parent(self, key: str, create: bool) -> tuple[int, str]:
        """Open the folder that holds ``key`` (creating folders if asked), never following symlinks.

        Returns (dir_fd, file name). The caller closes dir_fd.
        """
        self.validate_key(key)
        *folders, leaf = key.split("/")
        fd = self._open_root()
        try:
            for part in folders:
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
            return fd, leaf
        except BaseException:
            os.close(fd)
            raise

    def _tmp_name(self, leaf: str) -> str:
        with self._lock:
            self._counter += 1
            n = self._counter
        return f".{leaf[:200]}.{os.getpid()}.{n}.tmp"

    def _write(self, key: str, chunks, expect_sha256: str | None, *, once: bool = False) -> tuple[int, str] | None:
        """Write ``chunks`` under ``key``. ``once``: only if no object is there; returns (size, sha256) of what
        was not written when one is (else None)."""
        try:
            dfd, leaf = self._open_parent(key, create=True)
        except OSError as e:
            raise self._os_error(f"cannot create the folders of {key!r}", e) from None
        tmp = self._tmp_name(leaf)
        try:
            h = hashlib.sha256() if expect_sha256 or once else None
            size = 0
            try:
                ffd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                              0o644, dir_fd=dfd)
            except OSError as e:
                raise self._os_error(f"cannot write {key!r}", e) from None
            try:
                with os.fdopen(ffd, "wb") as f:
                    for chunk in chunks:
                        if h is not None:
                            h.update(chunk)
                        size += len(chunk)
                        f.write(chunk)
                    f.flush()
                    if self.fsync:
                        os.fsync(f.fileno())
                if expect_sha256 and h.hexdigest() != expect_sha256.lower():
                    raise self.error(f"{key!r}: content does not match its sha256 (the spool file changed "
                                     "after it was closed)", kind="object", code="BadDigest")
                if once:
                    if not self._link_into_place(tmp, leaf, dfd):
                        return size, h.hexdigest()
                else:
                    # rename() replaces a symlink at the destination instead of following it.
                    os.rename(tmp, leaf, src_dir_fd=dfd, dst_dir_fd=dfd)
                    tmp = None
            except OSError as e:
                raise self._os_error(f"cannot write {key!r}", e) from None
            finally:
                if tmp is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=dfd)
        finally:
            os.close(dfd)
        return None

    def _link_into_place(self, tmp: str, leaf: str, dfd: int) -> bool:
        """Give the written temporary file its final name only if that name is free (the caller removes ``tmp``).
        False when an object (or anything else) is already there."""
        if self._links:
            try:
                os.link(tmp, leaf, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
                return True
            except FileExistsError:
                return False
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV):
                    raise
                self._links = False
                log.warning("%s: the filesystem refused a hard link (%s): write-once objects are checked before "
                            "they are renamed into place, which another writer could race", self.label, e.strerror)
        try:
            os.stat(leaf, dir_fd=dfd, follow_symlinks=False)
            return False
        except FileNotFoundError:
            os.rename(tmp, leaf, src_dir_fd=dfd, dst_dir_fd=dfd)
            return True

    # -- Store API ------------------------------------------------------------------------------------------

    def check(self) -> None:
        fd = self._open_root()
        try:
            probe = f".reel-check.{os.getpid()}.{threading.get_ident()}"
            try:
                pfd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                              0o644, dir_fd=fd)
                os.close(pfd)
                os.unlink(probe, dir_fd=fd)
            except OSError as e:
                raise self._os_error("directory is not writable", e) from None
        finally:
            os.close(fd)

    def put_file(self, key: str, path: Path, content_type: str | None = None, *,
                 sha256: str | None = None) -> None:
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise self.error(f"{key!r}: source file {path} is missing", kind="object",
                             code="NoSuchFile") from None
        with f:
            found = self._write(key, iter(lambda: f.read(1 << 20), b""), sha256, once=True)
        if found is not None:
            self.accept_existing(key, *found)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self._write(key, [bytes(data)], None)

    def put_bytes_once(self, key: str, data: bytes, content_type: str | None = None) -> None:
        found = self._write(key, [bytes(data)], None, once=True)
        if found is not None:
            self.accept_existing(key, *found)

    def get_bytes(self, key: str) -> bytes:
        with self._open_read(key) as f:
            return f.read()

    def exists(self, key: str) -> bool:
        try:
            self.get_size(key)
        except StoreError as e:
            if e.code == "NoSuchKey":
                return False
            raise
        return True

    def list_keys(self, prefix: str) -> list[str]:
        if prefix:
            self.validate_key(prefix.rstrip("/"))
        top = self.root / prefix
        if not top.is_dir():
            return []
        keys = []
        try:
            for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
                dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
                rel = Path(dirpath).relative_to(self.root).as_posix()
                keys.extend(f"{rel}/{f}" for f in filenames if not (f.startswith(".") and f.endswith(".tmp")))
        except OSError as e:
            raise self._os_error(f"cannot list {prefix!r}", e) from None
        return sorted(keys)

    def get_size(self, key: str) -> int:
        try:
            dfd, leaf = self._open_parent(key, create=False)
        except (FileNotFoundError, NotADirectoryError):
            raise self.error(f"{key!r}: no such object", kind="object", code="NoSuchKey") from None
        except OSError as e:
            raise self._os_error(f"cannot read {key!r}", e) from None
        try:
            st = os.stat(leaf, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            raise self.error(f"{key!r}: no such object", kind="object", code="NoSuchKey") from None
        finally:
            os.close(dfd)
        return st.st_size

    def _open_read(self, key: str):
        try:
            dfd, leaf = self._open_parent(key, create=False)
        except (FileNotFoundError, NotADirectoryError):
            raise self.error(f"{key!r}: no such object", kind="object", code="NoSuchKey") from None
        except OSError as e:
            raise self._os_error(f"cannot read {key!r}", e) from None
        try:
            ffd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except FileNotFoundError:
            raise self.error(f"{key!r}: no such object", kind="object", code="NoSuchKey") from None
        except OSError as e:
            raise self._os_error(f"cannot read {key!r}", e) from None
        finally:
            os.close(dfd)
        return os.fdopen(ffd, "rb")

    def stat(self, key: str) -> ObjectInfo:
        """A directory keeps no checksum: the file is read back, streaming, and hashed (local disk)."""
        h = hashlib.sha256()
        size = 0
        with self._open_read(key) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
        return ObjectInfo(size, h.hexdigest())

    def read_into(self, key: str, out) -> None:
        with self._open_read(key) as f:
            shutil.copyfileobj(f, out, CHUNK)

    def delete(self, key: str) -> None:
        try:
            dfd, leaf = self._open_parent(key, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            raise self._os_error(f"cannot delete {key!r}", e) from None
        try:
            os.unlink(leaf, dir_fd=dfd)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise self._os_error(f"cannot delete {key!r}", e) from None
        finally:
            os.close(dfd)

    def free_bytes(self) -> int:
        """Free space where the store writes (for disk-full checks)."""
        return shutil.disk_usage(self.root).free
