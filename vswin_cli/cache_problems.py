"""A cache that cannot be used, written or searched, and a model it does not hold, each told in one
line that says what to do (and the warnings printed along the way).

Read-only caches (a shared mount, or a cache copied to an offline machine, which also changes the
mtimes): reading needs no lock and no write; a verification that cannot be recorded still counts
for this run (the file is hashed again next time). What must write (a download, replacing a
corrupted file) fails with one line naming the cache folder.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .download_settings import hf_home, hub_cache_dir
from .errors import VswinError

_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_TOO_LARGE = (errno.EFBIG,)  # `ulimit -f`, a per-file quota, FAT32's 4 GiB
_NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST)  # a file where the cache needs a folder


def _cache_error(message: str) -> VswinError:
    """A cache that cannot be used (read-only, full, a file or folder in the way, a path that cannot be made):
    the environment's fault, not a usage error, so exit 1 as a full disk under ``-o`` is (README: 2 is for
    usage errors), whichever command it stops."""
    return VswinError(message, exit_code=1)


def _in_the_way(name: str, path: Path, folder: Path) -> None:
    """A folder (or a pipe, a device) where the cache keeps the file of ``name`` fails in one line; vswin
    removes only files it wrote, so the user moves it. Nothing to say when ``path`` is a file or is not there."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # not there (or unreadable: the read that needs it says so)
    if stat.S_ISREG(mode):
        return
    what = "a folder" if stat.S_ISDIR(mode) else "something that is not a file (a pipe, a device or a socket)"
    variable = _cache_variable(folder)
    raise _cache_error(
        f"{name}: {what} stands where the cache keeps its file ({path}); "
        f"move it away or point {variable} at another folder"
    )


def _cannot_write(error: BaseException) -> bool:
    """The cache's fault (permissions, a full disk, a file in the way), not a broken connection."""
    return isinstance(error, OSError) and error.errno in (*_READ_ONLY, *_NO_SPACE, *_TOO_LARGE, *_NOT_A_FOLDER)


def _cache_variable(folder: Path) -> str:
    """The setting that moves ``folder``: HF_HUB_CACHE for Hub files when it is set, else HF_HOME."""
    if folder == hub_cache_dir() and (os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")):
        return "HF_HUB_CACHE"
    return "HF_HOME"


def _os_detail(error: OSError) -> str:
    """``Permission denied: /path`` when the error names both, else its first line."""
    return f"{error.strerror}: {error.filename}" if error.strerror and error.filename else _first_line(error)


def _read_only_message(problem: str, folder: Path, error: OSError) -> str:
    """One line for a write into the cache that failed (see _cannot_write and _UNUSABLE_PATH), saying what to do."""
    detail = _os_detail(error)
    variable = _cache_variable(folder)
    if error.errno in _UNUSABLE_PATH:
        return f"{problem}: the cache folder {folder} cannot be made there ({detail}); point {variable} at another folder"
    if error.errno in _NO_SPACE:
        return (
            f"{problem}: no space left in the cache folder {folder} ({detail}); "
            f"free some space or point {variable} at a folder on a disk with room"
        )
    if error.errno in _TOO_LARGE:
        return (
            f"{problem}: the file is too large for the cache folder {folder} ({detail}): a file-size limit "
            f"(`ulimit -f`, a quota) or a file system that cannot hold it (FAT32: 4 GiB at most); "
            f"raise the limit or point {variable} at a folder on another file system"
        )
    if error.errno in _NOT_A_FOLDER:
        return (
            f"{problem}: a file stands where the cache folder {folder} needs a folder ({detail}); "
            f"move that file away or point {variable} at another folder"
        )
    return (
        f"{problem}: the cache folder {folder} is not writable ({detail}); "
        f"make it writable or point {variable} at a writable folder"
    )


@contextmanager
def _writing(problem: str, folder: Path) -> Iterator[None]:
    """Around writes to the cache: a cache that cannot be written becomes one line saying what to do."""
    try:
        yield
    except OSError as error:
        if not (_cannot_write(error) or error.errno in _UNUSABLE_PATH):
            raise
        raise _cache_error(_read_only_message(problem, folder, error)) from None


_UNUSABLE_PATH = (errno.ENOENT, errno.ELOOP, errno.ENAMETOOLONG)  # HF_HOME under /proc, or through a loop of links


def _in_unusable_cache(error: BaseException) -> bool:
    """huggingface_hub could not make a folder of the Hub cache (under /proc, say)."""
    if not isinstance(error, OSError) or error.errno not in _UNUSABLE_PATH or not error.filename:
        return False
    cache = os.path.realpath(hub_cache_dir())
    return os.path.realpath(os.fsdecode(error.filename)).startswith(cache)


def _check_cache_folders() -> None:
    """A cache setting that names a file fails here, in one line, not deep inside a download.

    Otherwise huggingface_hub reports it as a failure to reach the Hub (it reads HF_HOME/token first).
    """
    for folder in (hf_home(), hub_cache_dir()):
        variable = _cache_variable(folder)
        try:
            os.stat(folder)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENAMETOOLONG):  # no file can ever be made below it
                raise _cache_error(f"{variable}={os.environ.get(variable, folder)}: the cache folder {folder} cannot be "
                                   f"used ({error.strerror}); point {variable} at another folder") from None
        path = folder
        try:
            while not path.exists() and path != path.parent:  # the nearest part that exists
                path = path.parent
            if path.is_dir():
                continue
        except OSError:
            continue  # unreadable: the read or write that needs it will say so
        raise _cache_error(
            f"{variable}={os.environ.get(variable, folder)}: the cache folder {folder} is not a folder ({path} is a "
            f"file); move that file away or point {variable} at a folder"
        )


def not_cached_message(name: str, cache_path: Path, reason: str) -> str:
    """The one line a user sees when a model is neither cached nor downloadable here."""
    return (
        f"model '{name}' is not in the cache ({cache_path}) and {reason}; "
        f"run `vswin download {name}` on a machine with a network and copy {hf_home()} over "
        f"(or point HF_HOME at such a copy), or pass a checkpoint file with -m PATH"
    )


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
