"""Where results go: table / JSON / JSONL / CSV writers, atomic files, resume journals, .npy features.

Rules users rely on (DESIGN.md, "Behaviour"):

- ``.json`` and ``.csv`` files are written atomically: a temporary file in the same folder,
  fsync, then ``os.replace``. A crash leaves the previous file (or none), never half of one.
- ``.jsonl`` is a journal: one record per line, appended, flushed and fsynced per video, so a
  SIGKILL loses at most the video in flight. A killed run can leave a truncated last line; it is
  dropped when the file is opened again with ``--resume``.
- For ``.json``/``.csv`` outputs the records are journaled beside the output, in
  ``<output>.partial.jsonl``, while the run goes; the final file is written from it at the end and
  the journal is then removed. If the run is interrupted (an exception, Ctrl-C) the final file is
  still written atomically with the videos finished so far, and the journal is kept so that
  ``--resume`` knows exactly what was done.
- ``--resume``: a video is done when its newest record in the output (or its journal) has
  ``status: "ok"``, the same ``model`` and ``views`` as this run and as many labels as its
  ``--top-k`` asks. Error records are retried. Paths are compared as absolute paths (relative
  ones from the current folder): ``videos/a.mp4`` and ``/data/videos/a.mp4`` are one video.
  Every video appears exactly once in the final file: the newest record of a path wins and keeps
  the position of the first one. CSV rows carry no model or protocol, so a finished ``.csv``
  without its journal cannot prove what made it: its rows are kept but recomputed.
- Without ``--resume`` an existing output is replaced; nothing is touched before the first
  record arrives (or before a successful end with no records).
- ``-o`` through a symbolic link writes the link's target (the link stays); the journal sits beside
  the target. Pipes, devices and sockets are refused: they cannot be replaced atomically nor hold
  a journal beside them.
- A run holds an advisory lock (``flock`` on ``<output>.lock``, or ``DIR/index.jsonl.lock`` for
  features) so that a second run on the same output stops at once instead of both sharing one
  journal. The OS drops the lock when a process dies: a killed run never blocks the next one.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import stat
import sys
import tempfile
import unicodedata
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from .errors import VswinError
from .records import Prediction, Status, VideoRecord

try:
    import fcntl
except ImportError:  # Windows: runs on one output are not guarded against each other
    fcntl = None  # type: ignore[assignment]

FORMATS = ("table", "json", "jsonl", "csv")
DEFAULT_TOP_K = 5  # labels per video, and so CSV columns, when a caller does not say
EXTENSION_FORMATS = {".json": "json", ".jsonl": "jsonl", ".csv": "csv"}
JOURNAL_SUFFIX = ".partial.jsonl"
LOCK_SUFFIX = ".lock"
INDEX_NAME = "index.jsonl"

# Read once: files made by mkstemp are 0600, the final files get the usual umask permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)


# --------------------------------------------------------------------------- format selection


def select_format(fmt: str | None, output: Path | None, stdout_is_terminal: bool | None = None) -> str:
    """``--format`` wins, else ``-o``'s extension, else a table on a terminal, else JSON lines."""
    if fmt is not None:
        fmt = str(getattr(fmt, "value", fmt)).lower()
        if fmt not in FORMATS:
            raise VswinError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
        if output is not None and fmt == "table":
            raise VswinError("--format table is for the terminal; with -o use json, jsonl or csv")
        return fmt
    if output is not None:
        if Path(output).is_dir():
            raise VswinError(f"-o {output} is a folder; give a file name such as results.csv")
        by_extension = EXTENSION_FORMATS.get(Path(output).suffix.lower())
        if by_extension is None:
            raise VswinError(
                f"cannot tell the format of -o {output} from its extension; "
                "name it .json, .jsonl or .csv, or add --format json|jsonl|csv"
            )
        return by_extension
    if stdout_is_terminal is None:
        stdout_is_terminal = _isatty(sys.stdout)
    return "table" if stdout_is_terminal else "jsonl"


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------- serialisation


def _dumps(obj: Any, indent: int | None = None, encoding: str = "utf-8") -> str:
    """JSON text, as is where ``encoding`` can write it; else (paths with undecodable bytes, an
    emoji on a Latin-1 terminal) every non-ASCII character \\u-escaped."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent)
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        text = json.dumps(obj, ensure_ascii=True, indent=indent)
    return text


def record_to_json_line(record: VideoRecord, encoding: str = "utf-8") -> str:
    """One JSONL line, without its newline, that ``encoding`` can write."""
    return _dumps(record.to_dict(), encoding=encoding)


def records_to_json(records: Iterable[VideoRecord]) -> str:
    """A JSON array with one record per line (frame lists stay short), ending with a newline."""
    lines = [record_to_json_line(r) for r in records]
    return "[\n  " + ",\n  ".join(lines) + "\n]\n" if lines else "[]\n"


def csv_header(top_k: int) -> list[str]:
    """``path,status,label_1,score_1,...,label_k,score_k,error``."""
    columns = ["path", "status"]
    for rank in range(1, top_k + 1):
        columns += [f"label_{rank}", f"score_{rank}"]
    return columns + ["error"]


def csv_row(record: VideoRecord, top_k: int) -> list[str]:
    """One video, flattened; missing ranks are empty cells; scores keep full float precision."""
    row = [record.path, record.status]
    for rank in range(top_k):
        if rank < len(record.predictions):
            prediction = record.predictions[rank]
            row += [prediction.label, repr(float(prediction.score))]
        else:
            row += ["", ""]
    return row + [record.error or ""]


def csv_line(cells: Sequence[str]) -> str:
    """One CSV row ending in ``\\n``, each cell quoted when it holds a comma, a quote or a line
    break: a carriage return too (the csv module quotes only its line terminator's characters)."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()[:-2] + "\n"


def records_to_csv(records: Iterable[VideoRecord], top_k: int) -> str:
    return csv_line(csv_header(top_k)) + "".join(csv_line(csv_row(r, top_k)) for r in records)


def _record_from_csv_row(row: Mapping[str, str]) -> VideoRecord:
    """A CSV row as a record: class indices, model, views, video and clips are not in CSV
    (index is -1, model empty, the rest None/empty)."""
    predictions = []
    rank = 1
    while row.get(f"label_{rank}"):
        score = float(row[f"score_{rank}"])
        predictions.append(Prediction(rank=rank, index=-1, label=row[f"label_{rank}"], score=score))
        rank += 1
    status = row["status"]
    if status not in ("ok", "error"):
        raise ValueError(f"unknown status {status!r}")
    return VideoRecord(
        path=row["path"], status=status, error=row.get("error") or None, predictions=predictions
    )


def read_records(path: Path, fmt: str | None = None) -> list[VideoRecord]:
    """Read a results file written by vswin (format from ``fmt`` or the extension).

    A JSONL file's truncated last line (a killed run) is skipped; the file is not modified.
    """
    path = Path(path)
    fmt = fmt or select_format(None, path)
    try:
        if fmt == "jsonl":
            contents = _read_journal(path)
            return [_record_from(e, path, n) for e, n in zip(contents.entries, contents.lines)]
        if fmt == "json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise ValueError("not a JSON array")
            return [_record_from(d, path, number, "record") for number, d in enumerate(data, start=1)]
        if fmt == "csv":
            with path.open(encoding="utf-8", errors="surrogateescape", newline="") as f:
                return [_record_from_csv_row(row) for row in csv.DictReader(f)]
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        raise VswinError(
            f"{path} is not a vswin {fmt} results file ({error}); give another -o file or remove it"
        ) from None
    raise VswinError(f"cannot read results in format {fmt!r}")


def _record_from(entry: Any, path: Path, number: int, unit: str = "line") -> VideoRecord:
    """``entry`` (line or record ``number`` of ``path``) as a record. A hand-edited or foreign
    entry is a usage error that names it, so that the user can mend that one entry."""
    try:
        return VideoRecord.from_dict(entry)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        why = f"no {error.args[0]!r} field" if isinstance(error, KeyError) else str(error)
        raise VswinError(
            f"{path} {unit} {number} is not a vswin record ({why}); fix or delete that {unit}, "
            "or run without --resume to replace the file"
        ) from None


# --------------------------------------------------------------------------- atomic files


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
    # The name is shortened in the temporary one: a name near the 255-byte limit must still fit.
    fd, temp_name = tempfile.mkstemp(prefix=f".{_cut_name(target.name, 100)}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield temp_name
        _fsync(temp_name)
        with suppress(OSError):
            os.chmod(temp_name, 0o666 & ~_UMASK)  # as any new file, not mkstemp's 0600
        os.replace(temp_name, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp_name)
        raise
    _fsync_dir(target.parent)


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


# --------------------------------------------------------------------------- journals


@dataclass
class _JournalContents:
    entries: list[dict[str, Any]]
    lines: list[int]  # the 1-based line number of each entry, for messages
    good_end: int  # byte offset just past the last valid line
    needs_newline: bool  # the last valid line lacks its "\n" (killed between the two writes)
    size: int


def _read_journal(path: Path) -> _JournalContents:
    """Parse a JSONL journal. A bad last line without its newline is a killed write: it is left
    out. A bad line that is whole (its newline written) or has lines after it means the file is
    not ours: VswinError."""
    data = path.read_bytes() if path.exists() else b""
    entries: list[dict[str, Any]] = []
    lines: list[int] = []
    good_end, needs_newline, offset, number = 0, False, 0, 0
    while offset < len(data):
        newline = data.find(b"\n", offset)
        end = len(data) if newline < 0 else newline + 1
        line, number = data[offset:end], number + 1
        if line.strip():
            entry = _parse_line(line)
            if entry is None:
                if newline >= 0 or data[end:].strip():
                    raise VswinError(
                        f"{path} line {number} is not a JSON object, so it is not a vswin journal line; "
                        "fix or delete that line, or give another output"
                    )
                break  # the line a killed run was writing
            entries.append(entry)
            lines.append(number)
            needs_newline = newline < 0
        good_end = offset = end
    return _JournalContents(entries, lines, good_end, needs_newline, len(data))


def _parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # (nested past Python's recursion limit)
        return None
    return entry if isinstance(entry, dict) else None


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


# --------------------------------------------------------------------------- result sinks


class ResultSink:
    """Receives the records of a run, one video at a time, and writes them where they belong.

    ``done(path)`` says whether ``--resume`` may skip a video; ``add`` writes a record (streamed
    or journaled at once); ``close`` finishes the output. As a context manager, an exception
    closes it as incomplete (files stay valid, journals stay for ``--resume``).

    ``top_k``, when given, is the number of labels this run puts in each record: an older record
    with another number (a run with another ``--top-k``) is redone, so that every record of the
    output holds the same labels and the CSV no empty columns. ``labels``, when given, are this
    run's class names: an older record that names a class otherwise (a run with another
    ``--labels``) is redone, so that one output never mixes two label sets.
    """

    format: str = "jsonl"

    def __init__(
        self, model: str = "", views: Mapping[str, Any] | None = None, top_k: int | None = None,
        labels: Sequence[str] | None = None,
    ) -> None:
        self.model = model
        self.top_k = top_k
        self.labels = None if labels is None else list(labels)
        self.views = None if views is None else dict(views)
        self._views_canonical = _canonical(self.views)
        self._done: set[str] = set()
        self.n_ok = 0
        self.n_error = 0
        self._closed = False
        self.missing_from_here: list[str] = []  # see require_same_folder
        # Newest ok records of another --top-k or other class names: what keep_whole checks.
        self._other_form: dict[str, tuple[str, str]] = {}

    def done(self, path: str | os.PathLike[str]) -> bool:
        """True when this video already has an ok record for the same model and views."""
        return _path_key(path) in self._done

    def add(self, record: VideoRecord) -> None:
        if self._closed:
            raise RuntimeError("the result sink is closed")
        self._write(record)
        if record.ok:
            self.n_ok += 1
        else:
            self.n_error += 1
        self._update_done(record.to_dict())

    def close(self, complete: bool = True) -> None:
        if not self._closed:
            self._closed = True
            self._finish(complete)

    def _is_done(self, entry: Mapping[str, Any]) -> bool:
        return (
            entry.get("status") == "ok"
            and entry.get("model") == self.model
            and _canonical(entry.get("views")) == self._views_canonical
            and (self.top_k is None or len(entry.get("predictions") or []) == self.top_k)
            and self._same_labels(entry)
        )

    def _same_labels(self, entry: Mapping[str, Any]) -> bool:
        if self.labels is None:
            return True
        shown = list(entry.get("predictions") or [])
        for clip in entry.get("clips") or []:
            shown += clip.get("predictions") or []
        names = set(self.labels)
        try:
            indices = [int(p["index"]) for p in shown]
            # A CSV row holds no class indices (-1): its names must be among this run's.
            return all(p["label"] in names if i == -1 else 0 <= i < len(self.labels) and self.labels[i] == p["label"]
                       for i, p in zip(indices, shown))
        except (KeyError, TypeError, ValueError):
            return False

    def _update_done(self, entry: Mapping[str, Any]) -> None:
        key = _path_key(entry["path"])
        if self._is_done(entry):
            self._done.add(key)
        else:
            self._done.discard(key)
        shown = len(entry.get("predictions") or [])
        if entry.get("status") == "ok" and self.top_k is not None and shown != self.top_k:
            self._other_form[key] = (entry["path"], f"--top-k {shown}")
        elif entry.get("status") == "ok" and not self._same_labels(entry):
            self._other_form[key] = (entry["path"], "other class names (--labels)")
        else:
            self._other_form.pop(key, None)

    def keep_whole(self, output: Path, inputs: Iterable[str | os.PathLike[str]]) -> None:
        """A usage error when the output holds records of videos this run does not redo that were
        made with another --top-k or other class names: kept beside this run's, one output would
        hold two label sets, and a CSV (one column count) would lose labels or gain empty cells."""
        redone = {_path_key(path) for path in inputs}
        for key, (path, form) in self._other_form.items():
            if key not in redone:
                raise VswinError(
                    f"-o {output} holds results made with {form} (e.g. {path}), a video this run does not redo; "
                    "resume with the options that made them, give those videos too, or choose another output"
                )

    def _write(self, record: VideoRecord) -> None:
        raise NotImplementedError

    def _finish(self, complete: bool) -> None:
        pass

    def __enter__(self) -> ResultSink:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(complete=exc_type is None)


class StreamSink(ResultSink):
    """Results on a text stream (stdout): JSONL and CSV streamed per video, the table printed per
    video, JSON streamed as one array that is valid once closed. Nothing is written before the
    first record, or a run's end: a run that stops first (a usage error found late, such as a Ray
    cluster out of reach) leaves stdout empty, not an empty result a script would take."""

    def __init__(
        self,
        stream: IO[str],
        fmt: str,
        top_k: int,
        timeline: bool = False,
        model: str = "",
        views: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(model, views, top_k)
        self.format = fmt
        self.stream = stream
        self.timeline = timeline
        self._count = 0
        self._console = _table_console(stream) if fmt == "table" else None
        self._encoding = getattr(stream, "encoding", None) or "utf-8"

    def _write(self, record: VideoRecord) -> None:
        if self.format == "csv" and self._count == 0:
            self.stream.write(csv_line(csv_header(self.top_k)))
        if self.format == "table":
            assert self._console is not None
            for part in render_record(record, timeline=self.timeline):
                # File names and messages are never wrapped: they must stay copyable.
                self._console.print(part, soft_wrap=isinstance(part, Text))
        elif self.format == "json":
            text = record_to_json_line(record, self._encoding)
            self.stream.write(("[\n  " if self._count == 0 else ",\n  ") + text)
        elif self.format == "jsonl":
            self.stream.write(record_to_json_line(record, self._encoding) + "\n")
        else:
            self._write_csv(csv_line(csv_row(record, self.top_k)))
        self._count += 1
        self.stream.flush()

    def _finish(self, complete: bool) -> None:
        if self._count:
            if self.format == "json":
                self.stream.write("\n]\n")
        elif complete:  # a run with nothing to do still gives a well-formed, empty result
            if self.format == "json":
                self.stream.write("[]\n")
            elif self.format == "csv":
                self.stream.write(csv_line(csv_header(self.top_k)))
        self.stream.flush()


    def _write_csv(self, line: str) -> None:
        """The row as ``-o out.csv`` holds it: UTF-8, a name's bytes that are not UTF-8 as they are,
        whatever the stream's encoding (a stream without bytes underneath takes the text itself)."""
        raw = getattr(self.stream, "buffer", None)
        try:
            data = line.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate no file name decodes to: shown escaped
            data = line.encode("utf-8", "backslashreplace")
        if raw is None:
            self.stream.write(line)
            return
        self.stream.flush()
        raw.write(data)


class JsonlFileSink(ResultSink):
    """``-o out.jsonl``: the output is the journal; duplicates from retries are compacted at close."""

    format = "jsonl"

    def __init__(
        self, path: Path, resume: bool, model: str, views: Mapping[str, Any] | None, top_k: int | None = None,
        labels: Sequence[str] | None = None,
    ) -> None:
        super().__init__(model, views, top_k, labels)
        self.path = Path(path)
        # -o names this file: without --resume it is replaced, as asked; with it, it must be ours.
        self._journal = _Journal(self.path, keep=resume, check=(lambda e, n: _record_from(e, self.path, n)) if resume else None)
        self.missing_from_here = _missing_from_here(self._journal.entries)
        self._seen: set[str] = set()
        self._compact = False
        for entry, number in zip(self._journal.entries, self._journal.lines):
            record = _record_from(entry, self.path, number)
            self._note(record.path)
            self._update_done(record.to_dict())
        self._journal.entries = []  # read for ``done``; no need to hold them

    def _note(self, path: str) -> None:
        key = _path_key(path)
        if key in self._seen:
            self._compact = True
        self._seen.add(key)

    def _write(self, record: VideoRecord) -> None:
        self._note(record.path)
        self._journal.append(record.to_dict())

    def _finish(self, complete: bool) -> None:
        if self._journal.lost:
            return
        if complete:
            self._journal.touch()  # a finished run with no videos still leaves its (empty) file
        self._journal.close()
        if self._compact:
            _compact_journal(self.path)


class SnapshotFileSink(ResultSink):
    """``-o out.json`` / ``-o out.csv``: records are journaled in ``<out>.partial.jsonl`` as they
    come; the final file is written atomically from the previous output and the journal."""

    def __init__(
        self, path: Path, fmt: str, resume: bool, top_k: int | None, model: str, views: Mapping[str, Any] | None,
        labels: Sequence[str] | None = None,
    ) -> None:
        super().__init__(model, views, top_k, labels)
        self.format = fmt
        self.path = Path(path)
        self.journal_path = journal_path(self.path)
        if self.path.is_dir():
            raise VswinError(f"-o {self.path} is a folder; give a file name such as results.{fmt}")
        self._resume = resume
        # The journal's name is vswin's choice, not the user's: a file there that is not a vswin
        # journal is refused, never emptied or removed.
        self._journal = _Journal(self.journal_path, keep=resume, check=self._check_journal_entry)
        self._journal.entries = []  # _entries() reads the repaired journal itself
        self._added = 0
        # Without resume a journal left by an older run is stale: emptied at the first record.
        with user_io(self.path, "open"):
            entries = self._entries() if resume else []
        self.missing_from_here = _missing_from_here(entries)
        for entry in entries:
            self._update_done(entry)

    def _check_journal_entry(self, entry: Any, number: int) -> None:
        try:
            VideoRecord.from_dict(entry)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise VswinError(
                f"{self.journal_path}, the file vswin keeps beside -o {self.path} while it runs, holds something "
                f"else (line {number} is not a vswin record); move it away or choose another output"
            ) from None

    def _entries(self) -> list[dict[str, Any]]:
        """With resume: the previous output's records, then the journal's; else the journal's."""
        previous = read_records(self.path, self.format) if self._resume and self.path.exists() else []
        journaled = read_records(self.journal_path, "jsonl") if self.journal_path.exists() else []
        return [r.to_dict() for r in previous + journaled]

    def _write(self, record: VideoRecord) -> None:
        self._journal.append(record.to_dict())
        self._added += 1

    def _finish(self, complete: bool) -> None:
        if self._journal.lost:
            return  # nothing sound to write the output from
        if not complete and self._added == 0:
            self._journal.close()
            return  # nothing new: leave the previous output and journal exactly as they were
        self._journal.touch()  # without resume this empties a stale journal of an older run
        self._journal.close()
        with user_io(self.path):
            records = [VideoRecord.from_dict(e) for e in _newest_by_path(self._entries()).values()]
            if self.format == "json":
                write_text_atomic(self.path, records_to_json(records))
            else:
                write_text_atomic(self.path, records_to_csv(records, DEFAULT_TOP_K if self.top_k is None else self.top_k))
        if complete:
            with suppress(FileNotFoundError):
                os.unlink(self.journal_path)


def journal_path(output: Path) -> Path:
    """The journal kept beside a .json/.csv output while a run goes: ``<output>.partial.jsonl``."""
    output = Path(output)
    return output.with_name(output.name + JOURNAL_SUFFIX)


def open_sink(
    output: Path | None,
    fmt: str | None,
    *,
    resume: bool = False,
    top_k: int | None = None,
    model: str = "",
    views: Mapping[str, Any] | None = None,
    timeline: bool | None = None,
    stream: IO[str] | None = None,
    labels: Sequence[str] | None = None,
) -> ResultSink:
    """The sink for a run: ``-o FILE`` (format from ``fmt`` or its extension) or ``stream``
    (stdout by default; a table when it is a terminal). ``top_k``: the labels per record of this
    run (CSV columns; with ``resume``, records with another number are redone); when None, CSV has
    5 pairs of columns and records are not checked. ``timeline`` (default: when ``views`` has a
    ``stride``) adds the per-clip rows to the table. ``labels``: this run's class names (with
    ``resume``, records that name classes otherwise are redone)."""
    if resume and output is None:
        raise VswinError("--resume needs -o FILE: the results already written are read from it")
    stream = sys.stdout if stream is None else stream
    chosen = select_format(fmt, output, _isatty(stream) if output is None else False)
    if output is None:
        if timeline is None:
            timeline = bool((views or {}).get("stride"))
        columns = DEFAULT_TOP_K if top_k is None else top_k
        return StreamSink(stream, chosen, columns, timeline=timeline, model=model, views=views)
    target = output_target(output, chosen)
    if chosen == "jsonl":
        return JsonlFileSink(target, resume, model, views, top_k, labels)
    return SnapshotFileSink(target, chosen, resume, top_k, model, views, labels)


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


def _lock(path: Path, output: Path) -> int:
    while True:
        with user_io(output):
            path.parent.mkdir(parents=True, exist_ok=True)
            # Read-only: locking needs no write access to a lock file left by another user.
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise VswinError(
                f"another vswin run is writing {output}; wait for it to finish or choose another output"
            ) from None
        except OSError:
            return fd  # a file system without locks (some network mounts): run unguarded
        try:
            status = os.fstat(fd)
            if os.path.samestat(status, os.stat(path)):
                if status.st_size:  # vswin's lock files are empty; removed at the end, this one would be lost
                    os.close(fd)
                    raise VswinError(f"{path} is in the way: vswin keeps an empty lock file of that name while it "
                                     f"writes {output}; move that file away or choose another output")
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the run that held it removed it as we opened it: lock the new one


# --------------------------------------------------------------------------- table


def console_width() -> int | None:
    """The width for a Rich console: None (Rich asks COLUMNS, then the terminal) unless COLUMNS is
    0, which Rich would take as a width of nothing and print nothing at all (results included)."""
    columns = os.environ.get("COLUMNS", "").strip()
    return 80 if columns.isdigit() and int(columns) == 0 else None


def _table_console(stream: IO[str]) -> Console:
    # Plain text unless stream is a terminal; NO_COLOR drops every style, not just colours.
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(
        file=stream,
        width=console_width(),
        color_system=None if plain else "auto",
        highlight=False,
        markup=False,
        emoji=False,
    )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(float(seconds), 0.0), 60.0)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:05.2f}" if hours else f"{minutes}:{secs:05.2f}"


_INVISIBLE = {"Cc", "Zl", "Zp"}  # control characters and line breaks: they would break or restyle a row


def display_text(text: str) -> str:
    """``text`` as one line a terminal shows as it is: newlines, tabs and escape sequences in file
    names or labels become backslash escapes (``\\n``, ``\\x1b``), undecodable bytes ``\\udcff``
    (the terminal write would fail on them)."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if text.isprintable():
        return text
    return "".join(
        char.encode("unicode_escape").decode("ascii") if unicodedata.category(char) in _INVISIBLE else char
        for char in text
    )


def render_record(record: VideoRecord, timeline: bool = False) -> list[RenderableType]:
    """One video for people, as lines and tables to print in order: its path, then its top-k
    (and, with ``timeline``, one row per clip); an error is one red line with its reason."""
    parts: list[RenderableType] = []
    if not record.ok:
        line = Text(display_text(record.path), style="bold")
        line.append(f"  error: {display_text(record.error or 'unknown error')}", style="red")
        parts.append(line)
    else:
        parts.append(Text(display_text(record.path), style="bold"))
        table = Table(box=box.SIMPLE, pad_edge=False, show_edge=False)
        table.add_column("#", justify="right")
        table.add_column("score", justify="right")
        table.add_column("label")
        for p in record.predictions:
            table.add_row(str(p.rank), f"{p.score:.4f}", display_text(p.label))
        parts.append(table)
    for warning in record.warnings:
        parts.append(Text(f"  warning: {display_text(warning)}", style="yellow"))
    if timeline and record.ok and record.clips:
        parts.append(_timeline_table(record))
    return parts


def _timeline_table(record: VideoRecord) -> Table:
    table = Table(box=box.SIMPLE, pad_edge=False, show_edge=False, title_justify="left")
    for name in ("start", "end", "score"):
        table.add_column(name, justify="right")
    table.add_column("label")
    table.add_column("next")
    for clip in record.clips:
        top = clip.predictions[:1]
        runners_up = "; ".join(f"{display_text(p.label)} {p.score:.3f}" for p in clip.predictions[1:3])
        table.add_row(
            _clock(clip.start),
            _clock(clip.end),
            f"{top[0].score:.4f}" if top else "",
            display_text(top[0].label) if top else "",
            runners_up,
        )
    return table


# --------------------------------------------------------------------------- features


def _path_hash(path: Path) -> str:
    return hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:10]


# File names are at most 255 bytes on common file systems; the longest name a video gets is its
# scores file, ``<stem>.scores.npy``.
_NAME_MAX = 255
_STEM_MAX = _NAME_MAX - len(".scores.npy")


def feature_path(out_dir: Path, input_path: Path, input_root: Path, disambiguate: bool = False) -> Path:
    """``DIR/<input relative to its root>.npy`` (``a/x.mp4`` -> ``DIR/a/x.mp4.npy``, keeping the
    video's extension so ``x.mp4`` and ``x.avi`` do not collide). A file given directly (root = its
    parent) gives ``DIR/<name>.npy``. With ``disambiguate`` the name gets the first 10 hex digits of
    the sha256 of the input's absolute path: ``x.mp4.<hash>.npy``. Names are kept as they are
    (spaces, non-ASCII); a path that cannot be made relative to its root falls back to its name.
    A name too long for the file system with the suffixes added is cut and gets the hash too, so
    that every file of the video fits within 255 bytes and two cut names never meet."""
    input_path, input_root = Path(input_path), Path(input_root)
    try:
        relative = input_path.relative_to(input_root)
    except ValueError:
        try:
            relative = Path(os.path.abspath(input_path)).relative_to(os.path.abspath(input_root))
        except ValueError:
            relative = Path(input_path.name)
    if ".." in relative.parts or not relative.parts:
        relative = Path(input_path.name)
    tag = f".{_path_hash(input_path)}"
    stem = relative.name + (tag if disambiguate else "")
    if len(os.fsencode(stem)) > _STEM_MAX:
        stem = _cut_name(relative.name, _STEM_MAX - len(tag)) + tag
    return Path(out_dir) / relative.with_name(stem + ".npy")


def plan_feature_paths(
    inputs: Sequence[tuple[Path, Path]], out_dir: Path, taken: Mapping[str, str] | None = None
) -> list[Path]:
    """Output paths for ``(input, root)`` pairs, in order. Inputs whose mirrored paths collide
    (two roots holding ``a/x.mp4``, or names equal up to case) all get the hashed name, so the
    rule does not depend on the order of the inputs. The same file given twice keeps one name.
    ``taken`` maps files already recorded in the folder's index (``str(path).casefold()``) to the
    video they belong to (its index path): another video never gets that name."""
    plain = [feature_path(out_dir, path, root) for path, root in inputs]
    # A video's .npy and its scores file: a video named ``x.mp4.scores`` would otherwise write
    # its features where ``x.mp4``'s scores go.
    owners: dict[str, set[str]] = {}
    for (path, _), out in zip(inputs, plain):
        for name in (out, scores_path(out)):
            owners.setdefault(str(name).casefold(), set()).add(_path_key(path))
    taken = taken or {}

    def clashes(path: Path, out: Path) -> bool:
        keys = [str(name).casefold() for name in (out, scores_path(out))]
        return any(len(owners[key]) > 1 or (key in taken and taken[key] != _path_key(path)) for key in keys)

    return [
        feature_path(out_dir, path, root, disambiguate=True) if clashes(path, out) else out
        for (path, root), out in zip(inputs, plain)
    ]


def scores_path(npy_path: Path) -> Path:
    """``x.mp4.npy`` -> ``x.mp4.scores.npy``."""
    return npy_path.with_name(npy_path.name[: -len(".npy")] + ".scores.npy")


def sidecar_path(npy_path: Path) -> Path:
    """The sidecar JSON of a feature file: ``x.mp4.npy`` -> ``x.mp4.json``."""
    return Path(npy_path).with_suffix(".json")


@dataclass(frozen=True)
class FeatureEntry:
    """One line of ``index.jsonl``: a video, its status and where its files are (relative to DIR)."""

    path: str
    status: Status
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    model: str = ""
    views: dict[str, Any] | None = None
    output: str | None = None
    sidecar: str | None = None
    shape: list[int] | None = None
    dtype: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "error": self.error,
            "warnings": list(self.warnings),
            "model": self.model,
            "views": None if self.views is None else dict(self.views),
            "output": self.output,
            "sidecar": self.sidecar,
            "shape": None if self.shape is None else [int(n) for n in self.shape],
            "dtype": self.dtype,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEntry:
        status = data["status"]
        if status not in ("ok", "error"):
            raise ValueError(f"unknown status {status!r}")
        return cls(
            path=str(data["path"]),
            status=status,
            error=data.get("error"),
            warnings=[str(w) for w in data.get("warnings") or []],
            model=str(data.get("model") or ""),
            views=None if data.get("views") is None else dict(data["views"]),
            output=data.get("output"),
            sidecar=data.get("sidecar"),
            shape=None if data.get("shape") is None else [int(n) for n in data["shape"]],
            dtype=data.get("dtype"),
        )


class FeatureIndex:
    """``DIR/index.jsonl`` of extract-features: one entry per video, appended and fsynced as each
    finishes. ``done(path)``: the newest entry is ok, for the same model and views, and its .npy
    still exists. Duplicates left by retries are compacted (newest wins) at close."""

    def __init__(self, out_dir: Path, resume: bool, model: str, views: Mapping[str, Any] | None) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise VswinError(f"-o {self.out_dir} is a file; extract-features writes into a folder")
        self.path = self.out_dir / INDEX_NAME
        self.model = model
        self._views_canonical = _canonical(None if views is None else dict(views))
        # index.jsonl in a folder of the user's (-o . among the videos) may be theirs: checked first.
        self._journal = _Journal(self.path, keep=resume, check=lambda entry, _: self._entry_from(entry))
        self.missing_from_here = _missing_from_here(self._journal.entries)
        self._newest: dict[str, FeatureEntry] = {}
        self._written: set[str] = set()  # every file an entry names (casefolded), see ``names``
        self._compact = False
        for entry in self._journal.entries:
            self._remember(self._entry_from(entry))
        self._journal.entries = []
        self._closed = False

    def _entry_from(self, data: Mapping[str, Any]) -> FeatureEntry:
        try:
            return FeatureEntry.from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise VswinError(
                f"{self.path} holds a line that is not a vswin index entry ({error}); "
                "give another -o folder or remove the file"
            ) from None

    def _remember(self, entry: FeatureEntry) -> None:
        for name in (entry.output, entry.sidecar):
            if name is not None:
                self._written.add(str(self.out_dir / name).casefold())
        key = _path_key(entry.path)
        self._compact = self._compact or key in self._newest
        self._newest[key] = entry

    def relative(self, path: Path) -> str:
        """``path`` relative to DIR, with forward slashes, as the index stores it."""
        try:
            return Path(os.path.relpath(path, self.out_dir)).as_posix()
        except ValueError:  # another drive on Windows
            return str(path)

    def taken(self) -> dict[str, str]:
        """The .npy files the index gives to videos (``str(DIR / output).casefold()`` -> index path)."""
        return {
            str(self.out_dir / entry.output).casefold(): key
            for key, entry in self._newest.items()
            if entry.status == "ok" and entry.output is not None
        }

    def done(self, path: str | os.PathLike[str]) -> bool:
        entry = self._newest.get(_path_key(path))
        return (
            entry is not None
            and entry.status == "ok"
            and entry.model == self.model
            and _canonical(entry.views) == self._views_canonical
            and entry.output is not None
            and (self.out_dir / entry.output).is_file()
        )

    def names(self, file: Path) -> bool:
        """True when an entry of the index names ``file`` (a .npy or sidecar): vswin wrote it."""
        return str(file).casefold() in self._written

    def output_of(self, path: str | os.PathLike[str]) -> Path | None:
        """The .npy file the newest entry of ``path`` names, or None."""
        entry = self._newest.get(_path_key(path))
        return None if entry is None or entry.output is None else self.out_dir / entry.output

    def add(self, entry: FeatureEntry) -> None:
        self._journal.append(entry.to_dict())
        self._remember(entry)

    def replacing(self, path: str) -> None:
        """Call before a video's files are replaced: an ok entry of an earlier run (other settings)
        stops counting first, so a run stopped halfway never leaves it vouching for new files.
        Without --resume the old index is emptied now, before any file it lists is replaced."""
        self._journal.touch()
        entry = self._newest.get(_path_key(path))
        if entry is not None and entry.status == "ok":
            self.add(FeatureEntry(path=path, status="error", model=self.model, views=entry.views,
                                  error="stopped while its files were being replaced; run again to redo it"))

    def close(self, complete: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        if complete:
            self._journal.touch()
        self._journal.close()
        if self._compact:
            _compact_journal(self.path)

    def __enter__(self) -> FeatureIndex:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(complete=exc_type is None)


def open_feature_index(
    out_dir: Path, *, resume: bool = False, model: str = "", views: Mapping[str, Any] | None = None
) -> FeatureIndex:
    """The index of an extract-features run in ``out_dir`` (read and repaired with ``resume``)."""
    return FeatureIndex(out_dir, resume, model, views)
