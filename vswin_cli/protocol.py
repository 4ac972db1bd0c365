"""Test protocols: how a video becomes views (clips x crops) for the model."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

# Normalisation of the official pipeline: RGB, on 0-255 values.
MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class Protocol:
    """How frames are sampled and cropped for one video.

    sampling: "clips" is the official Kinetics test mode (``num_clips`` clips of ``clip_len``
    frames, ``frame_interval`` apart, centred in equal segments); "uniform" is the
    Something-Something v2 mode (``clip_len`` frames spread over the whole video, one clip).
    """

    sampling: Literal["clips", "uniform"] = "clips"
    clip_len: int = 32
    frame_interval: int = 2
    num_clips: int = 4
    num_crops: Literal[1, 3] = 3
    short_side: int = 224
    crop_size: int = 224

    def with_overrides(self, **changes: object) -> "Protocol":
        """A copy with the given fields replaced; ``None`` values keep the current field."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, object]:
        return {
            "sampling": self.sampling,
            "clip_len": self.clip_len,
            "frame_interval": self.frame_interval,
            "num_clips": self.num_clips,
            "num_crops": self.num_crops,
            "short_side": self.short_side,
            "crop_size": self.crop_size,
        }


KINETICS = Protocol()
STHV2 = Protocol(sampling="uniform", clip_len=32, frame_interval=2, num_clips=1)
# torchvision's ports were evaluated with 12 clips of 32 frames, short side 256 and one centre
# crop (its own sampler also resamples to 15 fps, which this protocol does not).
TORCHVISION = Protocol(num_clips=12, num_crops=1, short_side=256, crop_size=224)


MAX_ASPECT_RATIO = 16  # long side : short side of frames vswin resizes
# 16384x8192 (16K panoramas). The highest levels of H.264, HEVC, VP9 and AV1 stop at 35.6
# megapixels (8192x4320); a header that claims far more (a GIF's screen of 16000x16000 in a 3 kB
# file) makes FFmpeg and the RGB frames take gigabytes per decoder.
MAX_FRAME_PIXELS = 16384 * 8192


def aspect_ratio_problem(width: int, height: int) -> str | None:
    """Why frames of this size are not resized, or None. Scaling the short side of a 2x4000
    sliver to 224 makes rows of 448,000 pixels, gigabytes for one clip. Real videos stay well
    inside 16:1 (cinema 2.4:1, panoramas 2:1)."""
    if min(width, height) >= 1 and max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        ratio = max(width, height) / min(width, height)
        return f"frames of {width}x{height} ({ratio:.0f}:1) are beyond the {MAX_ASPECT_RATIO}:1 aspect ratio vswin resizes"
    return None


def frame_pixels_problem(width: int, height: int) -> str | None:
    """Why frames of this size are not decoded (``MAX_FRAME_PIXELS``), or None."""
    if width * height > MAX_FRAME_PIXELS:
        return (f"frames of {width}x{height} ({width * height / 1e6:.0f} megapixels) are beyond the "
                f"{MAX_FRAME_PIXELS / 1e6:.0f} megapixels (16384x8192) vswin decodes")
    return None
