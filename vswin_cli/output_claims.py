"""Claiming an output before any work: ``-o`` checked (a folder, a pipe, this run's own stdout, one
of its input videos) and locked for the run (``claim_output``, ``claim_folder``, ``run_lock``).

Rules users rely on (DESIGN.md, "Behaviour"):

- ``-o`` through a symbolic link writes the link's target (the link stays); the journal sits beside
  the target. Pipes, devices and sockets are refused: they cannot be replaced atomically nor hold
  a journal beside them.
- A run holds an advisory lock (``flock`` on ``<output>.lock``, or ``DIR/index.jsonl.lock`` for
  features) so that a second run on the same output stops at once instead of both sharing one
  journal. The OS drops the lock when a process dies: a killed run never blocks the next one.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Iterable, Iterator

from .atomic_files import _special_kind, refuse_write_protected, user_io
from .errors import VswinError
from .feature_index import INDEX_NAME
from .formats import select_format
from .journals import journal_path

try:
    import fcntl
except ImportError:  # Windows: runs on one output are not guarded against each other
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = ".lock"


def output_target(output: Path, fmt: str) -> Path:
    """The file ``-o output`` writes: symbolic links followed. A folder, pipe, device, socket or the
    file this run's stdout goes to is refused (a usage error): the output is replaced by a rename and
    needs a journal beside it."""
    if Path(output).is_dir():
        raise VswinError(f"-o {output} is a folder; give a file name such as results.{fmt}")
    blocker = _file_in_the_way(Path(output))
    if blocker is not None:
        raise VswinError(f"-o {output} cannot be made: {blocker} is a file, not a folder; choose another output")
    kind = _special_kind(output)
    if kind is not None:
        what = f"{kind}, not a file"
    elif _is_own_stream(output):
        what = "this run's own stdout or stderr"  # -o /dev/stdout > file: that file would be replaced
    else:
        return Path(os.path.realpath(output))
    raise VswinError(f"-o {output} is {what}; for results on stdout give --format json|jsonl|csv without -o")


def _file_in_the_way(output: Path) -> Path | None:
    """The nearest existing ancestor of ``output`` when it is not a folder (``-o notes.txt/out.csv``):
    the folders to hold the output cannot be made."""
    for folder in Path(os.path.abspath(output)).parents:
        if os.path.lexists(folder):
            return None if folder.is_dir() else folder
    return None


def _is_own_stream(path: Path) -> bool:
    """True when ``path`` is the file this process's stdout or stderr is writing."""
    try:
        status = os.stat(path)
    except OSError:
        return False
    for fd in (1, 2):
        with suppress(OSError):
            if os.path.samestat(status, os.fstat(fd)):
                return True
    return False


def lock_path(output: Path) -> Path:
    """The file a run locks while it writes ``output``: ``<output>.lock``."""
    output = Path(output)
    return output.with_name(output.name + LOCK_SUFFIX)


@contextmanager
def claim_output(output: Path | None, fmt: str | None, inputs: Iterable[Path] = ()) -> Iterator[Path | None]:
    """Check ``-o output`` before any work and hold it for the run; yields the file to write
    (None for stdout). Usage errors: a name without a format, a folder, a pipe or device, a file
    that is one of ``inputs``, another run writing the same output."""
    if output is None:
        yield None
        return
    check_output_path(output, [output])
    chosen = select_format(fmt, output, False)
    target = output_target(output, chosen)
    # A .json/.csv run also holds its journal's lock: a run whose -o is that journal
    # (out.csv.partial.jsonl) would otherwise write the same file under another lock.
    locks = [lock_path(target)] + ([] if chosen == "jsonl" else [lock_path(journal_path(target))])
    written = [target, *locks] + ([] if chosen == "jsonl" else [journal_path(target)])
    check_output_path(output, written)
    refuse_overwriting_inputs(output, written, inputs)
    refuse_write_protected(target)
    with ExitStack() as held:
        for lock in locks:
            held.enter_context(run_lock(lock, output))
        yield target


@contextmanager
def claim_folder(out_dir: Path, written: Iterable[Path] = (), inputs: Iterable[Path] = ()) -> Iterator[Path]:
    """The same for an extract-features folder (made if missing): ``written`` are the files the run
    may write in it besides ``index.jsonl``."""
    out_dir = Path(out_dir)
    check_output_path(out_dir, [out_dir, out_dir / INDEX_NAME])
    if out_dir.exists() and not out_dir.is_dir():
        raise VswinError(f"-o {out_dir} is a file; extract-features writes into a folder")
    blocker = _file_in_the_way(out_dir)
    if blocker is not None:
        raise VswinError(f"-o {out_dir} cannot be made: {blocker} is a file, not a folder; choose another output")
    lock = Path(os.path.realpath(out_dir)) / (INDEX_NAME + LOCK_SUFFIX)
    refuse_overwriting_inputs(out_dir, [*written, out_dir / INDEX_NAME, lock], inputs)
    with run_lock(lock, out_dir):
        yield out_dir


def check_output_path(output: Path, paths: Iterable[Path]) -> None:
    """A usage error, before any work, when one of ``paths`` (the output, and the files vswin keeps
    beside it) cannot even be looked at (a folder on the way without search permission, a name
    longer than the file system takes), or is where this run's stdout or stderr goes."""
    for path in paths:
        try:
            os.stat(path)
        except (FileNotFoundError, NotADirectoryError):  # to be made; or under a file, said when it is made
            continue
        except OSError as error:
            if error.errno == errno.ENAMETOOLONG and path != output:
                raise VswinError(f"-o {output}: the name is too long for the file vswin keeps beside it while it "
                                 f"writes ({path.name}); use a shorter name") from None
            raise VswinError(f"-o {output}: {error.strerror or error}; choose another output") from None
        if path != output and _is_own_stream(path):  # (the output itself: output_target says it)
            raise VswinError(f"{path}, which vswin writes for -o {output}, is this run's own stdout or stderr; "
                             "send them elsewhere")


def refuse_overwriting_inputs(output: Path, written: Iterable[Path], inputs: Iterable[Path]) -> None:
    """A usage error when a file the run writes is one of its input videos (inputs may come from a
    folder, through links or spelled otherwise: files are compared, not names)."""
    ids: set[tuple[int, int]] = set()
    for path in written:
        with suppress(OSError):
            status = os.stat(path)
            ids.add((status.st_dev, status.st_ino))
    if not ids:
        return  # nothing there yet: no input can be overwritten
    for path in inputs:
        with suppress(OSError):
            status = os.stat(path)
            if (status.st_dev, status.st_ino) in ids:
                raise VswinError(f"-o {output} would overwrite the input {path}; choose another output")


@contextmanager
def run_lock(path: Path, output: Path) -> Iterator[None]:
    """Hold an advisory lock on ``path`` (made if missing) for the block; VswinError at once when
    another process holds it. ``output`` names what is being written in messages."""
    fd = _lock(path, output) if fcntl is not None else None
    try:
        yield
    finally:
        if fd is not None:
            # Removed while still held: a run that opened it meanwhile sees that it is gone (_lock).
            with suppress(OSError):
                os.unlink(path)
            os.close(fd)


_unguarded: set[Path] = set()  # outputs said to be unguarded


def _lock(path: Path, output: Path) -> int:
    while True:
        with user_io(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            # Read-only: locking needs no write access to a lock file left by another user. Not
            # blocking: a named pipe of that name would wait for a writer forever.
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise VswinError(
                f"another vswin run is writing {output}; wait for it to finish or choose another output"
            ) from None
        except OSError:
            # A file system without locks (some network mounts): the run goes on, unguarded, and says
            # so once (an output has two locks: its own and its journal's).
            if output not in _unguarded:
                _unguarded.add(output)
                print(f"warning: the file system of {path.parent} cannot lock files, so nothing stops another "
                      f"vswin run from writing {output} at the same time", file=sys.stderr, flush=True)
            return fd
        try:
            status = os.fstat(fd)
            if os.path.samestat(status, os.stat(path)):
                # vswin's lock files are empty regular files; removed at the end, any other would be lost.
                if not stat.S_ISREG(status.st_mode) or status.st_size:
                    os.close(fd)
                    raise VswinError(f"{path} is in the way: vswin keeps an empty lock file of that name while it "
                                     f"writes {output}; move that file away or choose another output")
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the run that held it removed it as we opened it: lock the new one
