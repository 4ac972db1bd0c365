"""`vswin download`: fetch checkpoints into the cache and verify them, for later use offline.

vswin download swin-t-k400
vswin download swin-b-k400 hf://owner/repo@v1
vswin download --all
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import VswinError
from . import _output


def download(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Registry names (see `vswin models`) or hf://owner/repo[@revision][/file].", show_default=False
        ),
    ] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model of the registry.")] = False,
) -> None:
    """Download and verify checkpoints; one line per model.

    Exit 1 if any failed, 2 for unknown names or malformed hf:// references.
    """
    from ..hub import resolve_checkpoint
    from ..hub_repos import parse_hf_ref
    from ..registry import get_spec, list_specs

    wanted = list(names or [])
    if all_models:
        wanted += [spec.name for spec in list_specs() if spec.name not in wanted]
    if not wanted:
        raise VswinError("name the models to download (see `vswin models`), or pass --all")
    for name in wanted:  # unknown names and malformed references fail (exit 2) before anything is downloaded
        if name.startswith("hf://"):
            parse_hf_ref(name)
        else:
            get_spec(name)

    failed = 0
    for name in wanted:
        try:
            checkpoint = resolve_checkpoint(name)
        except VswinError as error:
            failed += 1
            message = str(error)  # Hub messages start with the reference already
            _output.error_line(message if message.startswith(f"{name}:") else f"{name}: {message}")
            continue
        digest = checkpoint.sha256[:16] + "..." if checkpoint.sha256 else "-"
        print(f"ok  {name}  {checkpoint.path}  sha256 {digest}", flush=True)
    if failed:
        raise typer.Exit(1)
