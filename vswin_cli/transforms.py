"""Frames to model input: resize the short side, crop, normalise; the official test transforms.

    resized = resize_short_side(frame, 224)          # once per decoded frame
    x = preprocess_clip(frames, KINETICS)            # (3 crops, 3, T, 224, 224) float32
    crops = crop_clip(frames, KINETICS)              # (3 crops, T, 224, 224, 3) uint8 ...
    x = normalize_views(crops.to(device))            # ... normalised where the model runs

The official pipeline is Resize(scale=(-1, S)) -> ThreeCrop(C) or CenterCrop(C) -> Normalize ->
FormatShape("NCTHW"). Frames are RGB uint8 arrays of shape (H, W, 3).

Resizing once per frame: a frame shared by several clips (overlapping windows, short videos that
wrap) should be resized once. Pass ``frame_transform=short_side_resizer(protocol)`` to the video
reader so frames are stored already resized; ``preprocess_clip`` then leaves frames whose short side
already has the target size untouched (the official resize to the same size is the identity), so
no cache is needed and memory holds small frames.

The engine keeps views as uint8 crops until the model takes them (``crop_clip``) and normalises
them on the model's device (``normalize_views``): a quarter of the memory and of the bytes moved
to a GPU, and no float work in the decoding workers. ``preprocess_clip`` is the two together; the
same float32 operations in the same order give the same numbers on any device.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from .errors import VswinError
from .protocol import MEAN_RGB, STD_RGB, Protocol, aspect_ratio_problem

Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), in pixels

_MEAN = torch.tensor(MEAN_RGB, dtype=torch.float32)
# The official Normalize multiplies by the reciprocal of std (mmcv.imnormalize_), computed in float64.
_INV_STD = torch.from_numpy((1.0 / np.array(STD_RGB, dtype=np.float64)).astype(np.float32))


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) after scaling the short side to ``short_side``, keeping the aspect ratio.

    mmcv 1.x ``rescale_size`` with scale (inf, S): factor ``S / min(h, w)``, each side
    ``int(side * factor + 0.5)``.
    """
    factor = short_side / min(height, width)
    return int(height * float(factor) + 0.5), int(width * float(factor) + 0.5)


def check_aspect_ratio(width: int, height: int) -> None:
    """Refuse frames too elongated to resize (``protocol.aspect_ratio_problem``)."""
    problem = aspect_ratio_problem(width, height)
    if problem:
        raise VswinError(f"{problem}; crop the video closer to its subject first")


def resize_short_side(frame: np.ndarray, short_side: int) -> np.ndarray:
    """Bilinear resize (``cv2.INTER_LINEAR`` on uint8) so the short side is ``short_side``."""
    height, width = frame.shape[:2]
    new_height, new_width = resized_size(height, width, short_side)
    if (new_height, new_width) == (height, width):
        return frame
    return cv2.resize(frame, (new_width, new_height), interpolation=cv2.INTER_LINEAR)


def short_side_resizer(protocol: Protocol) -> Callable[[np.ndarray], np.ndarray]:
    """The per-frame resize of a protocol, to apply once per decoded frame."""
    return partial(resize_short_side, short_side=protocol.short_side)


def three_crop_boxes(height: int, width: int, crop_size: int) -> list[Box]:
    """Official ThreeCrop: offsets 0, 2*step, step along the long side, step = (long - crop) // 2.

    The official code needs the short side equal to the crop; with a longer short side the crops
    are centred across it (``(short - crop) // 2``), which is the official placement when equal.
    """
    if width >= height:
        step = (width - crop_size) // 2
        top = (height - crop_size) // 2
        return [(x, top, x + crop_size, top + crop_size) for x in (0, 2 * step, step)]
    step = (height - crop_size) // 2
    left = (width - crop_size) // 2
    return [(left, y, left + crop_size, y + crop_size) for y in (0, 2 * step, step)]


def center_crop_box(height: int, width: int, crop_size: int) -> Box:
    """Official CenterCrop: left = (w - crop) // 2, top = (h - crop) // 2."""
    left = (width - crop_size) // 2
    top = (height - crop_size) // 2
    return (left, top, left + crop_size, top + crop_size)


def crop_boxes(height: int, width: int, protocol: Protocol) -> list[Box]:
    """The crops a protocol takes from a resized frame, in the official order."""
    if protocol.num_crops == 3:
        return three_crop_boxes(height, width, protocol.crop_size)
    if protocol.num_crops == 1:
        return [center_crop_box(height, width, protocol.crop_size)]
    raise VswinError(f"--crops must be 1 or 3, got {protocol.num_crops}")


def preprocess_clip(frames: Sequence[np.ndarray], protocol: Protocol) -> torch.Tensor:
    """One clip of RGB uint8 frames -> float32 tensor (num_crops, 3, T, crop, crop), normalised.

    Frames may be original or already resized (see the module docstring). Crops come in the
    official order (three crops: first, last, middle along the long side); the official pipeline
    stacks views crop-major across clips: (crop 0: clips 0..N-1, crop 1: ...).
    """
    return normalize_views(crop_clip(frames, protocol))


def crop_clip(frames: Sequence[np.ndarray], protocol: Protocol) -> torch.Tensor:
    """One clip of RGB uint8 frames -> uint8 tensor (num_crops, T, crop, crop, 3): resized and cropped."""
    if not frames:
        raise ValueError("a clip needs at least one frame")
    if protocol.short_side < protocol.crop_size:
        raise VswinError(
            f"the short side ({protocol.short_side}) must be at least the crop size ({protocol.crop_size})"
        )
    resized = [resize_short_side(_as_rgb_uint8(frame), protocol.short_side) for frame in frames]
    height, width = resized[0].shape[:2]
    if any(frame.shape[:2] != (height, width) for frame in resized):
        raise ValueError("all frames of a clip must have the same size")
    size = protocol.crop_size
    out = np.empty((protocol.num_crops, len(resized), size, size, 3), dtype=np.uint8)
    for index, (left, top, right, bottom) in enumerate(crop_boxes(height, width, protocol)):
        for t, frame in enumerate(resized):
            out[index, t] = frame[top:bottom, left:right]
    return torch.from_numpy(out)


def normalize_views(crops: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 crops (..., T, H, W, 3) -> float32 (..., 3, T, H, W): ``(x - mean) * (1 / std)``, on their device.

    A NumPy array (frames as OpenCV, PyAV or decord give them) is taken as well."""
    if isinstance(crops, np.ndarray):
        crops = torch.from_numpy(np.ascontiguousarray(crops))
    if not isinstance(crops, torch.Tensor):
        raise TypeError(f"normalize_views takes a torch tensor or a NumPy array of uint8 RGB frames, not {type(crops).__name__}")
    if crops.ndim < 4 or crops.shape[-1] != 3:
        raise ValueError(f"normalize_views takes RGB frames shaped (..., T, H, W, 3), not {tuple(crops.shape)}")
    if crops.dtype != torch.uint8:  # floats may be 0-1 or 0-255: which is not guessed
        raise TypeError(f"normalize_views takes uint8 frames (0-255), not {crops.dtype}")
    x = crops.to(torch.float32)  # a new tensor: the caller's frames are left as they are
    x.sub_(_MEAN.to(x.device)).mul_(_INV_STD.to(x.device))
    return x.movedim(-1, -4).contiguous()  # (T, H, W, C) -> (C, T, H, W)


def _as_rgb_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 frame of shape (H, W, 3), got {frame.dtype} {frame.shape}")
    return frame
