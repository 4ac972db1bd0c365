"""`vswin probe`: what the decoder sees in each file, and what is wrong with it.

    vswin probe clip.mp4
    vswin probe videos/ -r --format json

Exit code 0 when every file probes fine (notes such as rotation or a variable frame rate are not
failures), 1 when some file cannot be read as a video, 2 when a path does not exist.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from . import _output
from ._options import PathsArg, RecursiveOpt


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
    from ..inputs import discover

    found = discover(paths, recursive=recursive)
    rows = [probe_row(item.path) for item in found.videos]

    if output_format is ProbeFormat.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    skipped = []
    if found.skipped_files:
        skipped.append(f"{found.skipped_files} non-video file(s)")
    if found.skipped_folders:
        skipped.append(f"{found.skipped_folders} sub-folder(s) (use -r to descend)")
    if skipped:
        _output.warning_line("skipped " + " and ".join(skipped))
    if not rows:
        _output.warning_line("no video files found")
    if any(row["status"] == "error" for row in rows):
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

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column, justify in (("path", "left"), ("frames", "right"), ("fps", "right"), ("duration", "right"),
                            ("size", "right"), ("rotation", "right"), ("codec", "left"), ("problems", "left")):
        table.add_column(column, justify=justify, no_wrap=column != "problems")  # type: ignore[arg-type]
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
        table.add_row(*(Text(cell) for cell in cells))  # as they are: "[" in a file name is not markup
    console = _output.stdout_console()
    if not console.is_terminal:
        console.width = 200  # a pipe or file has room for whole rows
    console.print(table)
