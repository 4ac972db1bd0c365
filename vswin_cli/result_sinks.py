"""Where a run's records go, one video at a time: stdout (``StreamSink``), ``-o out.jsonl``
(``JsonlFileSink``) or ``-o out.json``/``out.csv`` (``SnapshotFileSink``); ``open_sink`` picks one.

Rules users rely on (DESIGN.md, "Behaviour"):

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
"""

from __future__ import annotations

import os
import sys
from contextlib import suppress
from pathlib import Path
from typing import IO, Any, Iterable, Mapping, Sequence

from rich.text import Text

from .atomic_files import user_io, write_text_atomic
from .errors import VswinError
from .formats import (
    DEFAULT_TOP_K, _isatty, _record_from, csv_header, csv_line, csv_row, read_records, record_to_json_line,
    records_to_csv, records_to_json, select_format,
)
from .journals import _canonical, _compact_journal, _Journal, _missing_from_here, _newest_by_path, _path_key, journal_path
from .output_claims import output_target
from .records import VideoRecord
from .terminal import _table_console, render_record


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
