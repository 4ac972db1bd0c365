"""Files replaced whole or not at all (``atomic_path``, ``write_*_atomic``), the write-protection
check made before replacing one, and ``user_io``: a failed write the user can fix, as one line.

Rules users rely on (DESIGN.md, "Behaviour"):

- ``.json`` and ``.csv`` files are written atomically: a temporary file in the same folder,
  fsync, then ``os.replace``. A crash leaves the previous file (or none), never half of one.
"""

from __future__ import annotations

import errno
import os
import stat
import secrets
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from .errors import VswinError
from .formats import _dumps


def _special_kind(path: Path) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder ("a pipe" ...)."""
    try:
        mode = os.stat(path).st_mode  # follows links: /dev/stdout is the pipe or terminal behind it
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def _link_target(path: Path) -> Path:
    """``path`` with symbolic links followed, so that a rename replaces the target, not the link."""
    return Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)


def write_protected(path: Path) -> bool:
    """True when ``path`` is a file made read-only (no write permission for anyone), or one this
    process may not write. A rename would replace it all the same, and the protection with it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and (not mode & 0o222 or not os.access(path, os.W_OK))


def refuse_write_protected(path: Path) -> None:
    if write_protected(path):
        raise VswinError(f"{path} is read-only; make it writable (chmod u+w) or choose another output")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """A temporary file name beside ``path`` for a writer that needs a name; on success the file
    is synced, given the usual permissions and renamed over ``path``; on failure removed.

    A symbolic link is followed (its target is replaced); a pipe or device is refused, since a
    rename would put a regular file in its place, and so is a read-only file.
    """
    kind = _special_kind(Path(path))
    if kind is not None:
        raise VswinError(f"{path} is {kind}, not a file; vswin only replaces regular files")
    refuse_write_protected(Path(path))
    target = _link_target(Path(path))
    temp_name, mode = _new_temporary(target)
    try:
        yield temp_name
        _fsync(temp_name)
        with suppress(OSError):
            # A writer may have put a file of its own in its place (safetensors' save_file: 0600).
            if stat.S_IMODE(os.stat(temp_name).st_mode) != mode:
                os.chmod(temp_name, mode)
        os.replace(temp_name, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp_name)
        raise
    _fsync_dir(target.parent)


def _new_temporary(target: Path) -> tuple[str, int]:
    """An empty file beside ``target`` and its permissions, made as any new file is: 0666 less the
    umask of the moment (mkstemp's 0600 would need a chmod from a umask read once, stale if the
    caller changes it)."""
    # The name is shortened in the temporary one: a name near the 255-byte limit must still fit.
    prefix = os.path.join(target.parent, f".{_cut_name(target.name, 100)}.")
    for _ in range(100):
        name = f"{prefix}{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        try:
            return name, stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
    raise FileExistsError(errno.EEXIST, "no unused temporary name", prefix)


@contextmanager
def _atomic_file(path: Path, mode: str = "wb", **open_args: Any) -> Iterator[IO[Any]]:
    """An open file written through :func:`atomic_path`; the folder is made if missing."""
    _link_target(Path(path)).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp_name, open(temp_name, mode, **open_args) as file:
        yield file


def _cut_name(name: str, max_bytes: int) -> str:
    """``name`` cut to at most ``max_bytes`` bytes in the file system's encoding, on a character boundary."""
    if len(os.fsencode(name)) <= max_bytes:
        return name
    name = name[:max_bytes]  # every character takes at least one byte
    while len(os.fsencode(name)) > max_bytes:
        name = name[:-1]
    return name


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    with suppress(OSError, AttributeError):
        _fsync(directory)


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` as UTF-8 (undecodable path bytes written back as they were), atomically."""
    with _atomic_file(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        f.write(text)


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON, atomically."""
    write_text_atomic(path, _dumps(obj, indent=2) + "\n")


def write_npy_atomic(path: Path, array: np.ndarray) -> None:
    """``array`` as a .npy file that plain ``numpy.load`` reads (no pickle), atomically."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise ValueError("object arrays cannot be saved without pickle")
    with _atomic_file(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


_ADVICE = {
    errno.ENOSPC: "free some space or choose another output",
    errno.EACCES: "choose an output in a folder you can write to",
    errno.EPERM: "choose an output in a folder you can write to",
    errno.EROFS: "choose an output on a writable disk",
}
if hasattr(errno, "EDQUOT"):
    _ADVICE[errno.EDQUOT] = "free some space or choose another output"


@contextmanager
def user_io(path: Path, action: str = "write") -> Iterator[None]:
    """A full disk or a read-only folder is the user's to fix: one line (exit 1), not a traceback."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error)
        reason = reason[:1].lower() + reason[1:]
        advice = _ADVICE.get(error.errno, "check the path or choose another output")
        raise VswinError(f"cannot {action} {path}: {reason}; {advice}", exit_code=1) from error
