"""Model references -> a ready model: checkpoint resolved (registry, Hub, path), loaded, labelled.

``load_model(ref)`` is the Python API's entry point and what the engine uses. The model it
returns carries what the engine needs besides weights: ``labels``, ``protocol``, ``name`` and
``checkpoint_sha256``.
"""

from __future__ import annotations

from pathlib import Path

from . import protocol as protocols
from .checkpoints import load_checkpoint
from .errors import VswinError
from .model import VideoSwin
from .protocol import Protocol

DEFAULT_MODEL = "swin-t-k400"

# Class counts of the label sets we ship: a checkpoint with one of these heads and no labels of
# its own was, as far as anyone distributes them, trained on that dataset.
_LABEL_SET_BY_CLASSES = {400: "kinetics400", 600: "kinetics600", 174: "sthv2"}


def read_labels_file(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # editors on Windows start files with a BOM
    except FileNotFoundError as error:
        raise VswinError(f"labels file not found: {path}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise VswinError(f"cannot read labels file {path}: {error.__class__.__name__}") from error
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise VswinError(f"labels file {path} holds no class names")
    return labels


def _bundled_labels(label_set: str) -> list[str]:
    from .registry import load_labels

    return load_labels(label_set)


def choose_labels(model: VideoSwin, *candidates: list[str] | None) -> list[str]:
    """The first candidate that fits the head, else a bundled set of that size, else numbered names."""
    classes = model.config.num_classes
    for labels in candidates:
        if labels is None:
            continue
        if len(labels) != classes:
            raise VswinError(f"the label list has {len(labels)} names but the model has {classes} classes; pass --labels FILE with {classes} lines")
        return list(labels)
    if classes in _LABEL_SET_BY_CLASSES:
        return _bundled_labels(_LABEL_SET_BY_CLASSES[classes])
    return [f"class_{i}" for i in range(classes)]


def load_model(
    ref: str = DEFAULT_MODEL,
    labels: str | Path | list[str] | None = None,
    device: str = "cpu",
) -> VideoSwin:
    """The model ``ref`` names (registry name, ``hf://owner/repo[@rev][/file]`` or a checkpoint path), in eval mode.

    ``labels`` (a file or a list) overrides the class names the checkpoint or registry provides.
    """
    from .hub import resolve_checkpoint

    resolved = resolve_checkpoint(str(ref))
    loaded = load_checkpoint(resolved.path)
    model = loaded.model
    user_labels = read_labels_file(labels) if isinstance(labels, (str, Path)) else labels
    model.labels = choose_labels(model, user_labels, loaded.labels, resolved.labels)
    model.protocol = _choose_protocol(resolved.protocol, loaded.layout, model.labels)
    model.name = resolved.name
    model.checkpoint_sha256 = resolved.sha256 or loaded.sha256
    return model.to(device).eval()


def _choose_protocol(registered: Protocol | None, layout: str, labels: list[str]) -> Protocol:
    if registered is not None:
        return registered
    if labels == _safe_bundled("sthv2"):
        return protocols.STHV2
    if layout == "torchvision":
        return protocols.TORCHVISION
    return protocols.KINETICS


def _safe_bundled(label_set: str) -> list[str] | None:
    try:
        return _bundled_labels(label_set)
    except VswinError:
        return None
