"""`vswin extract-features`: one .npy of Video Swin features per video, mirroring the input tree.

    vswin extract-features videos/ -r -o feats/
    vswin extract-features clip.mp4 -o feats/ --per-clip --dtype float16
    vswin extract-features videos/ -o feats/ --with-logits --resume
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..journals import require_same_folder
from ..output_claims import claim_folder
from . import _output
from ._options import (
    BatchSizeOpt, ClipLenOpt, ClipsOpt, CropsOpt, DeviceOpt, EngineChoice, EngineOpt, FrameIntervalOpt, LabelsOpt,
    ModelOpt, PathsArg, PrecisionOpt, RayAddressOpt, RecursiveOpt, FeaturesResumeOpt, StrideOpt,
)
from ._run import build_engine, check_engine, files_read, find_inputs, outcomes, progress, run_options, summary


class FeatureDtype(str, Enum):
    float32 = "float32"
    float16 = "float16"


def extract_features(
    paths: PathsArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the .npy files, their sidecars and index.jsonl.")],
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
    resume: FeaturesResumeOpt = False,
    per_clip: Annotated[bool, typer.Option("--per-clip", help="(N, C): one row per clip or window, crops averaged.")] = False,
    dtype: Annotated[FeatureDtype, typer.Option("--dtype", help="float32 or float16.")] = FeatureDtype.float32,
    with_logits: Annotated[bool, typer.Option("--with-logits", help="Also write the class probabilities classify reports (softmax per view, averaged) to <name>.scores.npy, in the model's class order (the sidecar lists the names).")] = False,
) -> None:
    """Write pooled Video Swin features per video (exit 0: all ok, 1: some failed, 2: usage error)."""
    options = run_options(
        clips=clips, crops=crops, clip_len=clip_len, frame_interval=frame_interval, stride=stride,
        device=device, precision=precision, batch_size=batch_size,
    )
    from ..features import FeatureWriter, feature_files

    _output.refuse_dash(output, "features go to a folder: give its name")
    check_engine(engine, ray_address)
    found = find_inputs(paths, recursive, output_folder=output)
    failed = done = 0
    written = feature_files(output, found.videos)
    # The folder is checked and locked before the model loads: a mistake there costs no waiting.
    with claim_folder(output, written, [item.path for item in found.videos] + files_read(model, labels)):
        runner = build_engine(model, labels, options, engine)
        if with_logits:
            runner.require_classifier("write class scores (--with-logits)", "leave out --with-logits for its features alone")
        with FeatureWriter(output, found.videos, runner, resume=resume, per_clip=per_clip, dtype=dtype.value, with_scores=with_logits) as writer:
            require_same_folder(writer.index.path, writer.index.missing_from_here, [item.path for item in found.videos])
            todo = [item for item in found.videos if not writer.done(item)]
            with progress(len(todo), "extracting") as advance:
                for outcome in outcomes(engine, ray_address, runner, todo):
                    failed += not writer.add(outcome)
                    done += 1
                    advance()
    summary(done, failed, len(found.videos) - len(todo), output)
    if failed:
        sys.exit(1)
