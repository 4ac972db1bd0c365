"""`vswin probe`: what the decoder sees in each file, and what is wrong with it.

    vswin probe clip.mp4
    vswin probe videos/ -r --format json

Exit code 0 when every file probes fine (notes such as rotation or a variable frame rate are not
failures), 1 when some file cannot be read as a video, 2 when a path does not exist or holds no
videos. Rows go to stdout; skipped files, progress and a closing count go to stderr.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from . import _output
from ._options import PathsArg, RecursiveOpt
from ._run import find_inputs, progress


class ProbeFormat(str, Enum):
    table = "table"
    json = "json"


def probe(
    paths: PathsArg,
    recursive: RecursiveOpt = False,
    output_format: Annotated[
        ProbeFormat, typer.Option("--format", help="A table for people, or JSON (one object per file).")
    ] = ProbeFormat.table,
) -> None:
    """Decode each video once and report frames, fps, duration, size, rotation, codec and problems."""
    _output.require_stdout("send it to a file: vswin probe ... > FILE")
    found = find_inputs(paths, recursive)  # no videos at all is a usage error, as for classify
    rows = []
    # Each file is decoded in full: a folder of long videos takes a while, so show how far it got.
    with progress(len(found.videos), "probing") as advance:
        for item in found.videos:
            rows.append(probe_row(item.path))
            advance()

    if output_format is ProbeFormat.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    failed = sum(row["status"] == "error" for row in rows)
    _output.stderr_console().print(f"{len(rows) - failed} ok, {failed} failed", markup=False)
    if failed:
        raise typer.Exit(1)


def probe_row(path: Path) -> dict[str, Any]:
    """One file's probe as a JSON-ready dict: status, the video's fields, problems."""
    from ..protocol import aspect_ratio_problem
    from ..video import VideoError, probe as probe_video

    try:
        info = probe_video(path)
    except VideoError as error:
        reason = str(error)
        prefix = f"{path}: "
        reason = reason[len(prefix):] if reason.startswith(prefix) else reason
        return {"path": str(path), "status": "error", "error": reason, "problems": [reason]}
    except MemoryError:
        reason = "out of memory while probing this file"
        return {"path": str(path), "status": "error", "error": reason, "problems": [reason]}
    except Exception as error:  # one odd file must not lose the other rows (as classify's records)
        reason = f"could not probe this file ({error.__class__.__name__}: {' '.join(str(error).split())})"
        return {"path": str(path), "status": "error", "error": reason, "problems": [reason]}
    problems = list(info.warnings)
    if info.variable_frame_rate:
        problems.append(f"variable frame rate (average {info.fps:.3g} fps)")
    if info.rotation:
        problems.append(f"rotated {info.rotation} degrees by its metadata (frames are turned upright)")
    elongated = aspect_ratio_problem(info.width, info.height)
    if elongated:
        problems.append(f"{elongated}: classify and extract-features fail this video")
    return {**info.as_dict(), "path": str(path), "status": "ok", "error": None, "problems": problems}


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    from ..terminal import display_text

    columns = (("path", "left"), ("frames", "right"), ("fps", "right"), ("duration", "right"),
               ("size", "right"), ("rotation", "right"), ("codec", "left"), ("problems", "left"))
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column, justify in columns:
        # On a narrow terminal long paths fold onto more lines (every character kept) and problems
        # wrap; the short columns keep their values whole instead of shrinking to "…".
        overflow = "fold" if column == "path" else "ellipsis"
        table.add_column(column, justify=justify, no_wrap=column not in ("path", "problems"), overflow=overflow)  # type: ignore[arg-type]
    listed: list[list[str]] = []
    for row in rows:
        if row["status"] == "error":
            cells = [row["path"], "-", "-", "-", "-", "-", "-", f"error: {row['error']}"]
        else:
            frames = str(row["frames"])
            if row["container_frames"] not in (None, row["frames"]):
                frames += f" (container {row['container_frames']})"
            cells = [
                row["path"], frames, f"{row['fps']:g}", f"{row['duration']:.2f}s", f"{row['width']}x{row['height']}",
                str(row["rotation"]), row["codec"], "; ".join(row["problems"]) or "-",
            ]
        cells[0], cells[-1] = display_text(cells[0]), display_text(cells[-1])  # a newline would split the row
        listed.append(cells)
        table.add_row(*(Text(cell) for cell in cells))  # as they are: "[" in a file name is not markup
    console = _output.stdout_console()
    if not console.is_terminal:
        console.width = 100_000  # a pipe or file: one line per file, whatever its length, for grep and cut
    # The short columns (a space either side) and some room for the path and the problems: on a
    # terminal narrower than that, Rich would squeeze the path and problems out of sight.
    short = sum(max(len(name), *(len(cells[i]) for cells in listed)) + 2 for i, (name, _) in enumerate(columns[1:-1], 1))
    if short + 2 * 10 > console.width:
        for cells in listed:  # one block per file instead: its path, then its fields, nothing cut
            console.print(Text(cells[0]), soft_wrap=True)
            fields = "  ".join(f"{name}={value}" for (name, _), value in zip(columns[1:-1], cells[1:-1]) if value != "-")
            if fields:
                console.print(Text(f"  {fields}"))
            console.print(Text(f"  {cells[-1]}" if cells[-1].startswith("error: ") else f"  problems: {cells[-1]}"))
        return
    console.print(table)
