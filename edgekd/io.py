"""Files edgekd writes and reads: hashes, atomic writes, JSON, and the lock on a build folder.

Every file edgekd writes goes through :func:`atomic_path` (a temporary name beside it, renamed only when the
write succeeded), so a crash, a full disk or ``kill -9`` leaves either the old file or the new one, never half of
one, and no temporary files behind. JSON that edgekd wrote earlier is read back through :func:`read_json`,
which turns a missing, truncated or wrong-shaped file into one :class:`EdgekdError` line instead of a traceback.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, read in 1 MiB chunks (teachers and bundles can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it only when the block succeeds; removed otherwise."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise EdgekdError(f"{path}: a file is in the way of its folder {path.parent}; choose another path") from None
    fd, tmp = tempfile.mkstemp(suffix=path.suffix, dir=path.parent, prefix=f".{path.stem}-")
    os.close(fd)
    try:
        yield Path(tmp)
        if os.stat(tmp).st_mode & 0o777 == 0o600:  # mkstemp's mode, untouched: give the usual permissions
            os.chmod(tmp, 0o666 & ~_umask())  # (a writer that set its own, e.g. an executable, keeps it)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def dumps_json(obj: Any, sort_keys: bool = False) -> str:
    """The one JSON layout edgekd writes: indented, non-JSON values as strings, a final newline."""
    return json.dumps(obj, indent=2, sort_keys=sort_keys, default=str) + "\n"


def write_json(path: str | Path, obj: Any, sort_keys: bool = False) -> Path:
    return atomic_write_text(path, dumps_json(obj, sort_keys))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through a temporary file (checkpoints, students, teachers)."""
    import torch

    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)  # a file object: torch names the archive's folder after a path, and tmp's is random
    except RuntimeError as exc:  # torch's zip writer turns a failed write (disk full, file too large) into this
        if "inline_container" not in str(exc) and "PytorchStreamWriter" not in str(exc):
            raise
        raise EdgekdError(f"{path}: the write failed (disk full or file too large); free space or choose another "
                          "--out") from None
    return Path(path)


def read_json(path: str | Path, what: str = "file", expect: type = dict, fix: str = "") -> Any:
    """JSON edgekd wrote earlier; a missing, unreadable, truncated or wrong-shaped file is one EdgekdError line
    naming the file (``fix`` says what to do, e.g. "re-run edgekd export")."""
    path = Path(path)
    hint = f"; {fix}" if fix else ""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise EdgekdError(f"{path}: no such {what}{hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgekdError(f"{path}: cannot read the {what} ({type(exc).__name__}){hint}") from None
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise EdgekdError(f"{path}: the {what} is not valid JSON ({detail}: truncated or corrupt){hint}") from None
    if not isinstance(obj, expect):
        raise EdgekdError(f"{path}: the {what} holds a JSON {type(obj).__name__}, expected a "
                          f"{'JSON object' if expect is dict else expect.__name__}{hint}")
    return obj


def cache_dir() -> tuple[Path, str]:
    """edgekd's cache folder ($EDGEKD_CACHE, default ~/.cache/edgekd) and how to name it in a message; a file in
    its place is one line, not a traceback deep in the planner."""
    value = os.environ.get("EDGEKD_CACHE")
    base, name = (Path(value), f"EDGEKD_CACHE={value}") if value else (Path.home() / ".cache" / "edgekd", "")
    name = name or str(base)
    if base.exists() and not base.is_dir():
        raise EdgekdError(f"{name}: is a file; point it to a folder")
    return base, name


def check_writable(folder: str | Path, flag: str = "--out") -> Path:
    """Fail now, not after minutes of training, when ``folder`` cannot be created or written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise EdgekdError(f"{flag} {folder}: exists and is not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".edgekd-write-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        raise EdgekdError(f"{flag} {folder}: cannot write there ({reason}); choose a writable folder") from None
    return folder


def check_writable_file(path: str | Path, flag: str = "--out") -> Path:
    """The folder a file will be written into must be writable (checked before the work that makes it)."""
    path = Path(path)
    if path.is_dir():
        raise EdgekdError(f"{flag} {path}: is a folder; give a file name")
    check_writable(path.parent if str(path.parent) else Path("."), flag)
    return path


class FolderLock:
    """An exclusive ``flock`` on ``FOLDER/.edgekd.lock`` for one run that writes into FOLDER.

    The kernel drops the lock when the process dies (``kill -9`` too), so a stale lock file never blocks the
    next run. A second run into the same folder fails at once with exit 2.
    """

    NAME = ".edgekd.lock"

    def __init__(self, folder: str | Path, flag: str = "--out") -> None:
        self.folder, self.flag = Path(folder), flag
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        check_writable(self.folder, self.flag)
        fd = os.open(self.folder / self.NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise EdgekdError(f"{self.flag} {self.folder} is in use by another edgekd run; wait for it to "
                                  "finish or choose another folder") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
