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
    str,
    typer.Option("-m", "--model", help="Registry name, hf://owner/repo[@revision][/file], or a checkpoint path."),
]
LabelsOpt = Annotated[
    Optional[Path],
    typer.Option("--labels", help="Class names, one per line (default: the model's own label set)."),
]
PathsArg = Annotated[list[Path], typer.Argument(help="Video files and/or folders.", show_default=False)]
