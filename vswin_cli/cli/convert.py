"""`vswin convert SRC DST.safetensors`: any supported checkpoint layout -> native safetensors.

    vswin convert swin_tiny_patch244_window877_kinetics400_1k.pth swin-t-k400.safetensors
    vswin convert swin3d_t-7615ae03.pth swin3d-t.safetensors --labels my_classes.txt
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import VswinError
from ._options import LabelsOpt
from ._output import stderr_console


def convert(
    source: Annotated[str, typer.Argument(help="Checkpoint: a path, a registry name or hf://owner/repo[@rev][/file].")],
    destination: Annotated[Path, typer.Argument(help="Output file, ending in .safetensors.")],
    labels: LabelsOpt = None,
) -> None:
    """Convert a checkpoint to vswin's native safetensors (architecture, labels and source hash inside)."""
    from ..checkpoints import save_native
    from ..loading import load_model

    if destination.suffix != ".safetensors":
        raise VswinError(f"the destination must end in .safetensors (got {destination.name})")
    if not destination.parent.exists():
        raise VswinError(f"the destination folder {destination.parent} does not exist")
    model = load_model(source, labels=labels)
    save_native(model, destination, labels=model.labels, source_sha256=model.checkpoint_sha256)
    config = model.config
    stderr_console().print(
        f"wrote {destination} (embed {config.embed_dim}, depths {list(config.depths)}, "
        f"window {list(config.window_size)}, {config.num_classes} classes)",
        markup=False,
    )
