"""Records for people: the table (and timeline) a video's results print as, and text made safe to
show on one terminal line (``display_text``)."""

from __future__ import annotations

import os
import unicodedata
from typing import IO

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from .records import VideoRecord


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
    # Rounded to what is shown before it is split: 59.996 s is 1:00.00, not 0:60.00.
    minutes, centiseconds = divmod(round(max(float(seconds), 0.0) * 100), 6000)
    hours, minutes = divmod(minutes, 60)
    secs = centiseconds / 100
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
