"""What classify and extract-features share: option checking, input discovery, model loading, progress."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from ..errors import VswinError
from ..inputs import Discovery, discover
from ._options import EngineChoice
from ._output import stderr_console, warning_line

if TYPE_CHECKING:  # the engine pulls in torch: imported when a command runs, not at start-up
    from ..engine import Engine as LocalEngine
    from ..engine import RunOptions


def run_options(
    *, clips, crops, clip_len, frame_interval, stride, device, precision, batch_size, top_k=5
) -> "RunOptions":
    from ..engine import RunOptions

    size: int | str = batch_size
    if batch_size != "auto":
        try:
            size = int(batch_size)
        except ValueError:
            raise VswinError("--batch-size must be a positive number or auto") from None
    return RunOptions(
        clips=clips, crops=crops, clip_len=clip_len, frame_interval=frame_interval, stride=stride,
        device=device, precision=precision, batch_size=size, top_k=top_k,
    )


def files_read(model_ref: str | None, labels: Path | None) -> list[Path]:
    """The model and labels files a run reads besides its videos: -o must not overwrite them either."""
    return [Path(name) for name in (model_ref, labels) if name is not None]


def find_inputs(paths: Sequence[Path], recursive: bool, output_folder: Path | None = None) -> Discovery:
    """The videos to run. In ``output_folder`` (extract-features' -o, often inside an input folder)
    the files that are no videos, the run's own outputs, do not count as skipped."""
    if not paths:
        raise VswinError("no inputs: give video files and/or folders")
    found = discover(paths, recursive=recursive, output_folders=[output_folder] if output_folder is not None else [])
    if found.skipped_folders and not recursive:
        warning_line(f"skipped {found.skipped_folders} sub-folder(s); use -r to include them")
    if found.skipped_files:
        warning_line(f"skipped {found.skipped_files} file(s) that are not videos")
    if found.unlisted_folders:
        folder, why = found.unlisted_folders[0]
        more = f" and {len(found.unlisted_folders) - 1} more" if len(found.unlisted_folders) > 1 else ""
        warning_line(f"could not list {folder} ({why}){more}, so the videos in it are left out")
    if not found.videos:
        raise VswinError("no videos found in the given paths")
    return found


def check_engine(engine: EngineChoice, ray_address: str | None = None) -> None:
    if ray_address is not None and engine != EngineChoice.ray:
        raise VswinError("--ray-address is for --engine ray; add --engine ray to run on that cluster")
    if engine == EngineChoice.ray:
        from ..ray_engine import import_ray

        import_ray()  # before the model loads: Ray missing, or unable to run here, is said at once


def outcomes(engine: EngineChoice, ray_address: str | None, runner: "LocalEngine", todo: list) -> Iterator:
    """The outcomes of ``todo`` from the chosen engine, in input order."""
    if engine == EngineChoice.ray:
        from ..ray_engine import run_on_ray

        return run_on_ray(runner, todo, address=ray_address)
    return runner.run(todo)


def build_engine(
    model_ref: str | None, labels: Path | None, options: "RunOptions", engine: EngineChoice = EngineChoice.local
) -> "LocalEngine":
    if engine == EngineChoice.ray:  # the model runs in the cluster's actors, not here
        from ..ray_engine import driver_engine

        return driver_engine(model_ref, labels, options)
    from ..engine import Engine as LocalEngine
    from ..loading import load_model

    return LocalEngine(load_model(model_ref, labels=labels), options)


def summary(done: int, failed: int, skipped: int, where: Path | None) -> None:
    """The closing line on stderr: what happened to each video, and where the results are."""
    parts = [f"{done - failed} ok", f"{failed} failed"]
    if skipped:
        parts.append(f"{skipped} already done (--resume)")
    stderr_console().print(
        ", ".join(parts) + (f"; results in {where}" if where is not None else ""), soft_wrap=True, markup=False
    )


@contextmanager
def progress(total: int, description: str, results_on_terminal: bool = False) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr when it is a terminal and the work is more than one video.

    Not when results are printed to the same terminal as they come: they show the progress, and
    a live bar would be torn by them.
    """
    if total <= 1 or not sys.stderr.isatty() or results_on_terminal:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=stderr_console(), transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
