"""Resume journals: append-only JSONL files, fsynced per entry, repaired when resumed, compacted
at the end; and how their entries' paths and views are matched to this run's (``_path_key``,
``_canonical``, ``require_same_folder``)."""

from __future__ import annotations

import json
import os
from contextlib import suppress
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Mapping, Sequence

from .atomic_files import user_io, write_text_atomic
from .errors import VswinError
from .formats import _dumps, _JournalContents, _read_journal

JOURNAL_SUFFIX = ".partial.jsonl"


class _Journal:
    """An append-only JSONL file: each entry is written and fsynced before add returns.

    With ``keep`` the existing lines are read (and a truncated last line cut off) and new ones are
    appended; without it the file is emptied, but only when the first entry arrives. A write that
    fails (a full disk) is cut off again, so the file keeps whole lines only. ``check(entry, line)``
    raises VswinError for an entry that is not vswin's: an existing file is checked before it is
    changed in any way (kept or not), so that a file that turns out not to be ours stays as it was.
    """

    def __init__(self, path: Path, keep: bool, check: Callable[[Any, int], object] | None = None) -> None:
        self.path = Path(path)
        self.entries: list[dict[str, Any]] = []
        self.lines: list[int] = []  # line numbers of the entries
        self._file: IO[bytes] | None = None
        self._keep = keep
        self.lost = False  # the file was removed or replaced during the run (``_check_in_place``)
        if self.path.is_dir():
            raise VswinError(f"{self.path} is a folder; give a file name")
        if (keep or check is not None) and self.path.exists():
            with user_io(self.path, "open"):
                contents = _read_journal(self.path)
            for entry, number in zip(contents.entries, contents.lines):
                if check is not None:
                    check(entry, number)
            if keep:
                self.entries, self.lines = contents.entries, contents.lines
                with user_io(self.path, "open"):
                    self._repair(contents)

    def _repair(self, contents: _JournalContents) -> None:
        if contents.good_end < contents.size:
            os.truncate(self.path, contents.good_end)
        if contents.needs_newline:
            with self.path.open("ab") as f:
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())

    def _open(self) -> IO[bytes]:
        if self._file is None:
            with user_io(self.path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Unbuffered: nothing is left in memory to fail again when the file is closed.
                self._file = self.path.open("ab" if self._keep else "wb", buffering=0)
            self._keep = True  # emptied once; opened again (after a failed write) it is appended to
        return self._file

    def append(self, entry: Mapping[str, Any]) -> None:
        data = (_dumps(dict(entry)) + "\n").encode("utf-8")
        file = self._open()
        with user_io(self.path):
            fd = file.fileno()
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:
                # Cut the part of the line that did reach the disk (freeing space, not taking it).
                with suppress(OSError):
                    os.ftruncate(fd, start)
                self.close()
                raise
        self._check_in_place(fd)

    def touch(self) -> None:
        self._check_in_place(self._open().fileno())

    def _check_in_place(self, fd: int) -> None:
        """Fail when the file written to is no longer the one at ``path`` (deleted, or replaced by
        another file or a folder during the run): its lines would be lost while the run said done."""
        try:
            in_place = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except OSError:
            in_place = False
        if not in_place:
            self.close()
            self.lost = True
            raise VswinError(f"{self.path} was removed or replaced during the run, so the results written to it are gone; "
                             "run the command again", exit_code=1)

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            with suppress(OSError):  # unbuffered and fsynced after each line: nothing is lost here
                file.close()


def _path_key(path: str | os.PathLike[str]) -> str:
    # Absolute: `videos/a.mp4`, `./videos/a.mp4` and `/data/videos/a.mp4` (run from /data) are one
    # video, so a resumed run that spells its folder otherwise neither redoes nor repeats it.
    # Relative paths in a journal are taken from the current folder, as the run gives them
    # (``require_same_folder``).
    return os.path.abspath(os.fspath(path))


def _missing_from_here(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """The entries' relative paths that name nothing from the current folder (``require_same_folder``)."""
    paths = (entry.get("path") for entry in entries)
    return [path for path in paths if isinstance(path, str) and path and not os.path.isabs(path)
            and not os.path.lexists(path)]


def require_same_folder(output: Path, missing: Sequence[str], inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse to resume from another folder a video the output names relative to the folder its run
    started in (``missing``: the sink's ``missing_from_here``).

    A journal's relative paths are read from the current folder: ``v/a.mp4`` written from /data,
    resumed from /data/sub as ``../v/a.mp4``, would be done again and kept twice (features under a
    second, hashed name). Such an input ends with the missing path; a video merely deleted since
    (an inbox emptied between runs) is no input, and the run goes on."""
    if not missing:
        return
    tails: dict[str, list[str]] = {}
    for path in missing:
        parts = [part for part in os.path.normpath(path).split(os.sep) if part not in ("", ".", "..")]
        if parts:
            tails.setdefault(parts[-1], []).append(os.sep + os.path.join(*parts))
    for item in inputs:
        absolute = os.path.abspath(item)
        for tail in tails.get(os.path.basename(absolute), ()):
            if absolute.endswith(tail):
                raise VswinError(
                    f"{output} names {tail[1:]!r} relative to the folder its run started in, not {os.getcwd()}, "
                    f"so {os.fspath(item)} would be done again and kept twice; run --resume from that folder"
                )


def _canonical(obj: Any) -> Any:
    # Compare views as they will read back from JSON (tuples become lists and so on).
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _newest_by_path(entries: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Newest entry per path, in the order of each path's first appearance."""
    newest: dict[str, dict[str, Any]] = {}
    for entry in entries:
        newest[_path_key(entry["path"])] = dict(entry)
    return newest


def _compact_journal(path: Path) -> None:
    """Rewrite a journal (atomically) with only the newest line of each path, in first-seen order."""
    with user_io(path):
        entries = _newest_by_path(_read_journal(path).entries).values()
        write_text_atomic(path, "".join(_dumps(e) + "\n" for e in entries))


def journal_path(output: Path) -> Path:
    """The journal kept beside a .json/.csv output while a run goes: ``<output>.partial.jsonl``."""
    output = Path(output)
    return output.with_name(output.name + JOURNAL_SUFFIX)
