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
    from ..atomic_files import refuse_write_protected, user_io

    if not destination.name.lower().endswith(".safetensors"):
        raise VswinError(f"the destination must end in .safetensors (got {destination.name})")
    with user_io(destination):  # a name too long for the file system, a folder that cannot be searched
        if destination.is_dir():
            raise VswinError(f"the destination {destination} is a folder; give a file name ending in .safetensors")
        if not destination.parent.is_dir():
            raise VswinError(f"the destination folder {destination.parent} does not exist")
        refuse_write_protected(destination)  # before the model loads
    model = load_model(source, labels=labels)
    # The protocol goes with the weights: a torchvision port keeps its own (short side 256, one crop).
    save_native(model, destination, labels=model.labels, source_sha256=model.checkpoint_sha256, protocol=model.protocol)
    config = model.config
    stderr_console().print(
        f"wrote {destination} (embed {config.embed_dim}, depths {list(config.depths)}, "
        f"window {list(config.window_size)}, {config.num_classes} classes)",
        markup=False,
        soft_wrap=True,  # one line, also in a log file
    )
