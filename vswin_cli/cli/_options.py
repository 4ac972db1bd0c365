"""Options shared by several commands, defined once."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


FormatOpt = Annotated[
    Optional[OutputFormat],
    typer.Option("--format", help="Stdout format (default: a table on a terminal, else by -o's extension or JSON lines)."),
]
ModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "-m", "--model", show_default=False,
        help="Registry name, hf://owner/repo[@revision][/file], or a checkpoint path "
        "(default: the registry's default, swin-t-k400; `vswin models` marks it).",
    ),
]
LabelsOpt = Annotated[
    Optional[Path],
    typer.Option("--labels", help="Class names, one per line (default: the model's own label set)."),
]
PathsArg = Annotated[list[Path], typer.Argument(help="Video files and/or folders.", show_default=False)]


class EngineChoice(str, Enum):
    """Where the pipeline runs (`--engine`)."""

    local = "local"
    ray = "ray"


# Options of the views and of where the model runs, shared by classify and extract-features.
ClipsOpt = Annotated[Optional[int], typer.Option("--clips", min=1, help="Temporal clips per video (default: the model's protocol).")]
CropsOpt = Annotated[Optional[int], typer.Option("--crops", help="Spatial crops per clip: 1 or 3 (default: the model's protocol).")]
ClipLenOpt = Annotated[Optional[int], typer.Option("--clip-len", min=1, help="Frames per clip (default: the protocol's, 32).")]
FrameIntervalOpt = Annotated[Optional[int], typer.Option("--frame-interval", min=1, help="Step between a clip's frames (default: the protocol's, 2).")]
StrideOpt = Annotated[Optional[float], typer.Option("--stride", help="Sliding windows, one every SECONDS over the whole video, instead of uniform clips.")]
RecursiveOpt = Annotated[bool, typer.Option("-r", "--recursive", help="Descend into sub-folders (without it, sub-folders are skipped and counted).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="auto, fp32, fp16 or bf16 (auto: float32 until a faster precision is verified for the hardware).")]
BatchSizeOpt = Annotated[str, typer.Option("--batch-size", help="Views per model call, or auto.")]
EngineOpt = Annotated[EngineChoice, typer.Option("--engine", help="local (this machine) or ray (a Ray cluster; extra vswin-cli[ray]).")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="Address of an existing Ray cluster (default: start one here).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="With -o: skip videos already done for the same model, protocol and --top-k.")]
FeaturesResumeOpt = Annotated[bool, typer.Option(
    "--resume", help="Skip videos already done for the same model, protocol, --per-clip, --dtype and --with-logits (and class names, with --with-logits).")]
