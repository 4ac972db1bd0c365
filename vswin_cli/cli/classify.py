"""`vswin classify`: top-k labels per video, or a timeline with --stride.

    vswin classify clip.mp4
    vswin classify videos/ -r -o labels.csv
    vswin classify long.mp4 --stride 2 --crops 1
    vswin classify videos/ -o labels.jsonl --resume
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..journals import require_same_folder
from ..output_claims import claim_output
from ..result_sinks import open_sink
from . import _output
from ._options import (
    BatchSizeOpt, ClipLenOpt, ClipsOpt, CropsOpt, DeviceOpt, EngineChoice, EngineOpt, FormatOpt, FrameIntervalOpt,
    LabelsOpt, ModelOpt, PathsArg, PrecisionOpt, RayAddressOpt, RecursiveOpt, ResumeOpt, StrideOpt,
)
from ._run import build_engine, check_engine, files_read, find_inputs, outcomes, progress, run_options, summary


def classify(
    paths: PathsArg,
    model: ModelOpt = None,
    labels: LabelsOpt = None,
    clips: ClipsOpt = None,
    crops: CropsOpt = None,
    clip_len: ClipLenOpt = None,
    frame_interval: FrameIntervalOpt = None,
    stride: StrideOpt = None,
    recursive: RecursiveOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchSizeOpt = "auto",
    engine: EngineOpt = EngineChoice.local,
    ray_address: RayAddressOpt = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write results to FILE (.json, .jsonl or .csv).")] = None,
    format: FormatOpt = None,
    resume: ResumeOpt = False,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels per video and per clip.")] = 5,
) -> None:
    """Label videos with the top-k classes (exit 0: all ok, 1: some failed, 2: usage error)."""
    options = run_options(
        clips=clips, crops=crops, clip_len=clip_len, frame_interval=frame_interval, stride=stride,
        device=device, precision=precision, batch_size=batch_size, top_k=top_k,
    )
    fmt = format.value if format is not None else None
    _output.refuse_dash(output, "for results on stdout give --format json|jsonl|csv without -o")
    if output is None:
        _output.require_stdout("give -o FILE")
    check_engine(engine, ray_address)
    found = find_inputs(paths, recursive)
    failed = done = 0
    # The output is checked and locked before the model loads: a mistake there costs no waiting.
    with claim_output(output, fmt, [item.path for item in found.videos] + files_read(model, labels)) as target:
        runner = build_engine(model, labels, options, engine)
        runner.require_classifier()
        # Records hold at most one label per class; the CSV has no columns beyond them, and
        # --resume redoes records with another number of labels.
        top_k = min(top_k, len(runner.labels))
        with open_sink(
            target, fmt, resume=resume, top_k=top_k, model=runner.model_name, views=runner.views, labels=runner.labels
        ) as sink:
            if target is not None:
                require_same_folder(target, sink.missing_from_here, [item.path for item in found.videos])
                sink.keep_whole(target, [item.path for item in found.videos])
            todo = [item for item in found.videos if not sink.done(item.path)]
            with progress(len(todo), "classifying", results_on_terminal=output is None and sys.stdout.isatty()) as advance:
                for outcome in outcomes(engine, ray_address, runner, todo):
                    sink.add(outcome.record)
                    failed += outcome.record.status != "ok"
                    done += 1
                    advance()
    summary(done, failed, len(found.videos) - len(todo), output)
    if failed:
        sys.exit(1)
