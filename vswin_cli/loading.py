"""Model references -> a ready model: checkpoint resolved (registry, Hub, path), loaded, labelled.

``load_model(ref)`` is the Python API's entry point and what the engine uses. The model it
returns carries what the engine needs besides weights: ``labels``, ``protocol``, ``name`` and
``checkpoint_sha256``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import torch

from . import protocol as protocols
from .checkpoints import load_checkpoint
from .errors import VswinError
from .model import VideoSwin
from .protocol import Protocol

if TYPE_CHECKING:
    from .registry import ModelSpec


# Class counts of the label sets we ship: a checkpoint with one of these heads and no labels of
# its own was, as far as anyone distributes them, trained on that dataset.
_LABEL_SET_BY_CLASSES = {400: "kinetics400", 600: "kinetics600", 174: "sthv2"}


# Far beyond any label set (Kinetics-700's file is 11 kB): more is not a list of class names, and
# reading it whole (/dev/zero, a 50 GB file) would exhaust memory.
_MAX_LABELS_BYTES = 16 << 20


def read_labels_file(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):  # a FIFO would block for ever, a device never end
            kind = "a folder" if stat.S_ISDIR(status.st_mode) else "not a regular file (a device, pipe or socket)"
            raise VswinError(f"labels file {path} is {kind}; give a text file with one class name per line")
        if status.st_size > _MAX_LABELS_BYTES:
            raise VswinError(f"labels file {path} has {status.st_size:,} bytes, too many for class names "
                             f"(at most {_MAX_LABELS_BYTES >> 20} MB); give a text file with one class name per line")
        with open(path, "rb") as handle:
            text = handle.read(_MAX_LABELS_BYTES + 1).decode("utf-8-sig")  # editors on Windows start files with a BOM
    except FileNotFoundError as error:
        raise VswinError(f"labels file not found: {path}") from error
    except OSError as error:
        raise VswinError(f"cannot read labels file {path}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise VswinError(f"labels file {path} is not UTF-8 text (byte {error.start}); save it as UTF-8") from error
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
        if classes == 0 and labels:
            raise VswinError("the model has no classifier head (a pretrained backbone), so it has no classes to name; leave out --labels")
        if len(labels) != classes:
            raise VswinError(f"the label list has {len(labels)} names but the model has {classes} classes; pass --labels FILE with {classes} lines")
        return list(labels)
    if classes in _LABEL_SET_BY_CLASSES:
        return _bundled_labels(_LABEL_SET_BY_CLASSES[classes])
    return [f"class_{i}" for i in range(classes)]


def label_list(labels: str | os.PathLike[str] | Iterable[str] | None) -> list[str] | None:
    """``labels`` as the API takes them (a file, or class names in any iterable) -> a list, or None."""
    if labels is None:
        return None
    if isinstance(labels, (str, os.PathLike)):
        return read_labels_file(labels)
    try:
        names = list(labels)
    except TypeError:
        raise TypeError(f"labels must be a file path or a list of class names, not {type(labels).__name__}") from None
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"labels must be class names (str); found {name!r} ({type(name).__name__})")
    return names


def load_model(
    ref: str | os.PathLike[str] | None = None,
    labels: str | Path | Iterable[str] | None = None,
    device: str | torch.device = "cpu",
) -> VideoSwin:
    """The model ``ref`` names (registry name, ``hf://owner/repo[@rev][/file]`` or a checkpoint path), in eval mode.

    ``ref`` None means the registry's default model (``default`` in weights.toml: swin-t-k400). ``labels`` (a file, or the class names in order)
    overrides the class names the checkpoint or registry provides. ``device``: ``cpu``
    (default), ``cuda[:N]``, ``mps``, ``auto`` (a GPU when there is one) or a ``torch.device``.
    """
    from .hub import resolve_checkpoint

    if ref is None:
        from .registry import default_model_name

        ref = default_model_name()
    if not isinstance(ref, (str, os.PathLike)):
        raise TypeError(f"the model reference must be a name, hf://owner/repo or a checkpoint path, not {type(ref).__name__}")
    ref = os.fspath(ref)
    if not ref.strip():
        raise VswinError("empty model reference: pass a registry name (`vswin models` lists them), hf://owner/repo or a checkpoint path")
    target = _target_device(device)  # before the weights are read: a bad device costs nothing
    user_labels = label_list(labels)
    resolved = resolve_checkpoint(ref)
    loaded = load_checkpoint(resolved.path)
    model = loaded.model
    if resolved.spec is not None:
        _check_registered(resolved.spec, model, resolved.path)
    model.labels = choose_labels(model, user_labels, loaded.labels, resolved.labels)
    # The protocol follows what the checkpoint is, not the names the caller gives its classes.
    own_labels = model.labels if user_labels is None else _own_labels(model, loaded.labels, resolved.labels)
    model.protocol = _choose_protocol(resolved.protocol or loaded.protocol, loaded.layout, own_labels)
    model.name = resolved.name
    model.checkpoint_sha256 = resolved.sha256 or loaded.sha256
    return model.to(target).eval()


def _target_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        # Checked as its name is (is there such a GPU?), as classify does; only a GPU's index matters.
        device = str(device) if device.type == "cuda" else device.type
    if not isinstance(device, str):
        raise TypeError(f"device must be a str or a torch.device, not {type(device).__name__}")
    # The engine's own choice and checks (auto: a CUDA GPU, else MPS, else the CPU), so both agree.
    from .engine import known_device, resolve_device

    if not known_device(device):
        raise VswinError(f"device must be auto, cpu, cuda, cuda:N or mps, not {device!r}")
    return resolve_device(device)


def _own_labels(model: VideoSwin, *candidates: list[str] | None) -> list[str] | None:
    """The class names the checkpoint itself gives (``choose_labels`` without the caller's), or None
    where its own do not fit the head."""
    try:
        return choose_labels(model, *candidates)
    except VswinError:
        return None


def _check_registered(spec: ModelSpec, model: VideoSwin, path: Path) -> None:
    """A registry name promises an architecture: a file in its place that is another model (a wrong
    source, a file put there by hand) would run under the name, untold. These files have no
    published hashes, so this is the check there is."""
    config, arch = model.config, spec.arch
    found = _describe_arch(config.embed_dim, config.depths, config.num_heads, config.window_size,
                           config.patch_size, config.num_classes)
    expected = _describe_arch(arch.embed_dim, arch.depths, arch.num_heads, arch.window_size,
                              arch.patch_size, spec.num_classes)
    if found != expected:
        raise VswinError(
            f"{path} is not {spec.name}'s checkpoint: it is {found}, where weights.toml gives {expected}; "
            f"delete the file and run `vswin download {spec.name}` again"
        )


def _describe_arch(embed_dim: int, depths: Sequence[int], heads: Sequence[int], window: Sequence[int],
                   patch: Sequence[int], classes: int) -> str:
    """e.g. ``C96 depths 2-2-6-2 heads 3-6-12-24 window 8x7x7 patch 2x4x4, 400 classes``."""
    def dashed(numbers: Sequence[int]) -> str:
        return "-".join(map(str, numbers))

    return (f"C{embed_dim} depths {dashed(depths)} heads {dashed(heads)} window {'x'.join(map(str, window))} "
            f"patch {'x'.join(map(str, patch))}, {classes} classes")


def _choose_protocol(registered: Protocol | None, layout: str, labels: list[str] | None) -> Protocol:
    if registered is not None:
        return registered
    # Something-Something's annotations spell its classes as templates ("Putting [something] into
    # [something]"); the label map has them without brackets. Either spelling is that dataset.
    if labels is not None and [name.replace("[", "").replace("]", "") for name in labels] == _safe_bundled("sthv2"):
        return protocols.STHV2
    if layout == "torchvision":
        return protocols.TORCHVISION
    return protocols.KINETICS


def _safe_bundled(label_set: str) -> list[str] | None:
    try:
        return _bundled_labels(label_set)
    except VswinError:
        return None
