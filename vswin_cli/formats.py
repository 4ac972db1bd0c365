"""Result formats: which one a run writes, records as JSON, JSONL and CSV text, and results files read back.

A JSONL file is read as a killed run may have left it: a truncated last line is skipped
(``_read_journal``, which journals.py also uses to repair a journal before appending to it).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterable, Mapping, Sequence

from .errors import VswinError
from .records import Prediction, VideoRecord

FORMATS = ("table", "json", "jsonl", "csv")
DEFAULT_TOP_K = 5  # labels per video, and so CSV columns, when a caller does not say
EXTENSION_FORMATS = {".json": "json", ".jsonl": "jsonl", ".csv": "csv"}


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


# --------------------------------------------------------------------------- JSONL files


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
    if path.exists() and not path.is_file():  # reading a named pipe would wait for a writer forever
        raise VswinError(f"{path} is in the way: it is not a file, so it is not a vswin journal; "
                         "move it away or give another output")
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
