"""Clip plans: which decoded frames each clip uses, and when it plays. Pure functions, no I/O.

    plan_clips(300, None, 30.0, KINETICS)            # 4 clips x 32 frames, official test mode
    plan_clips(300, None, 30.0, STHV2)               # 1 clip of 32 frames spread over the video
    plan_clips(9000, timestamps, 30.0, KINETICS, stride=2.0)   # one window every 2 s

Three ways to place clips:

* ``official_clip_indices``: mmaction2's ``SampleFrames`` in test mode, as the official Video Swin
  Kinetics configs use it (``twice_sample`` off, ``out_of_bound_opt='loop'``, start index 0).
* ``uniform_indices``: the same class with ``frame_uniform=True`` (Something-Something v2).
* ``sliding_window_indices``: ours, for timelines; see its docstring for the rules at the end of a
  video and for videos shorter than one window.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence

from .protocol import Protocol

# Timestamps read from containers are in milliseconds or coarser: a window that should start at
# exactly 2.0 s must not miss the frame stamped 1.9999999 s.
_TIME_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Clip:
    """One clip: the decoded frame indices it uses (0-based, in clip order) and when it plays.

    ``start`` is the time of the earliest frame used; ``end`` is when the latest frame used stops
    showing (the next frame's timestamp, or the video's end for its last frame), in seconds.
    """

    frames: list[int]
    start: float
    end: float

    def as_dict(self) -> dict[str, object]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "frames": list(self.frames)}


def official_clip_indices(num_frames: int, clip_len: int, frame_interval: int, num_clips: int) -> list[list[int]]:
    """Frame indices of the official test mode: ``num_clips`` clips of ``clip_len`` frames.

    With ``T`` frames, span ``L*s`` and ``avg = (T - L*s + 1) / N``, clip ``k`` starts at
    ``int(k*avg + avg/2)`` when ``T > L*s - 1`` and at 0 otherwise; frame ``i`` of a clip is
    ``start + i*s`` taken modulo ``T``, so a video shorter than a clip wraps around.
    """
    _check_positive(num_frames=num_frames, clip_len=clip_len, frame_interval=frame_interval, num_clips=num_clips)
    span = clip_len * frame_interval
    if num_frames > span - 1:
        average = (num_frames - span + 1) / float(num_clips)
        # The same float64 operations, in the same order, as the official numpy code.
        starts = [int(k * average + average / 2.0) for k in range(num_clips)]
    else:
        starts = [0] * num_clips
    return [[(start + i * frame_interval) % num_frames for i in range(clip_len)] for start in starts]


def uniform_indices(num_frames: int, clip_len: int) -> list[int]:
    """Something-Something v2 test mode: ``clip_len`` frames spread over the whole video.

    The span ``0..T-1`` is cut into ``clip_len`` segments of ``(T-1)/clip_len`` frames; frame ``i``
    is the middle ``(a + b) // 2`` of the segment's rounded ends ``a``, ``b`` (round half to even,
    as numpy's ``np.round``; Python's ``round`` on floats rounds the same way).
    """
    _check_positive(num_frames=num_frames, clip_len=clip_len)
    segment = float(num_frames - 1) / clip_len
    indices = []
    for i in range(clip_len):
        first = int(round(segment * i))
        last = int(round(segment * (i + 1)))
        indices.append((first + last) // 2)
    return indices


def sliding_window_indices(
    timestamps: Sequence[float], clip_len: int, frame_interval: int, stride: float
) -> list[list[int]]:
    """Windows of ``clip_len`` frames, ``frame_interval`` apart, one every ``stride`` seconds.

    Window ``k`` starts at the frame showing at time ``k * stride`` (the last frame stamped at or
    before it), for every ``k`` with ``k * stride`` before the last frame's timestamp, so variable
    frame rate videos get true times. Rules at the edges:

    * a window that would run past the last frame is replaced by one window that ends exactly on
      the last frame (its start is then off the stride grid); it appears once, even when several
      grid times fall in the tail;
    * a video shorter than one window (fewer than ``(clip_len-1)*frame_interval + 1`` frames) gets
      a single window starting at frame 0 whose indices wrap around modulo the frame count, as the
      official test protocol does for short videos.
    """
    num_frames = len(timestamps)
    _check_positive(num_frames=num_frames, clip_len=clip_len, frame_interval=frame_interval)
    if not (stride > 0 and math.isfinite(stride)):
        raise ValueError(f"stride must be a positive number of seconds, got {stride}")
    last_offset = (clip_len - 1) * frame_interval
    if num_frames <= last_offset:
        return [[(i * frame_interval) % num_frames for i in range(clip_len)]]

    latest_start = num_frames - 1 - last_offset
    origin = timestamps[0]
    starts: list[int] = []
    k = 0
    while True:
        time = origin + k * stride
        if k > 0 and time > timestamps[-1] + _TIME_TOLERANCE:
            break
        showing = max(bisect.bisect_right(timestamps, time + _TIME_TOLERANCE) - 1, 0)
        start = min(showing, latest_start)
        if not starts or start != starts[-1]:
            starts.append(start)
        if start == latest_start:
            break
        # Grid times before the next frame's stamp show this same frame: jump past them, so a
        # stride far shorter than a frame costs one step per frame, not one per grid time.
        # floor() never skips a grid time (at worst one more step shows this frame again).
        k = max(k + 1, math.floor((timestamps[showing + 1] - _TIME_TOLERANCE - origin) / stride))
    return [[start + i * frame_interval for i in range(clip_len)] for start in starts]


def frame_times(num_frames: int, timestamps: Sequence[float] | None, fps: float) -> list[float]:
    """Per-frame timestamps in seconds; ``i / fps`` when the container gave none."""
    if timestamps is not None:
        if len(timestamps) != num_frames:
            raise ValueError(f"{len(timestamps)} timestamps for {num_frames} frames")
        return [float(t) for t in timestamps]
    return [i / fps for i in range(num_frames)]


def plan_clips(
    num_frames: int,
    timestamps: Sequence[float] | None,
    fps: float,
    protocol: Protocol,
    stride: float | None = None,
) -> list[Clip]:
    """The clips a protocol takes from a video of ``num_frames`` decoded frames.

    ``timestamps`` are the decoded frames' times in seconds (``None``: ``i / fps``). With
    ``stride`` (seconds) the clips are sliding windows; otherwise the protocol's own sampling
    ("clips": official Kinetics test mode, "uniform": Something-Something v2).
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    times = frame_times(num_frames, timestamps, fps)
    if stride is not None:
        groups = sliding_window_indices(times, protocol.clip_len, protocol.frame_interval, stride)
    elif protocol.sampling == "uniform":
        groups = [uniform_indices(num_frames, protocol.clip_len)]
    elif protocol.sampling == "clips":
        groups = official_clip_indices(num_frames, protocol.clip_len, protocol.frame_interval, protocol.num_clips)
    else:
        raise ValueError(f"unknown sampling {protocol.sampling!r}")
    return [_clip(frames, times, fps) for frames in groups]


def shortfall_warning(num_frames: int, protocol: Protocol, stride: float | None = None) -> str | None:
    """A warning when the video is shorter than one clip, so its frame indices wrap around."""
    if protocol.sampling == "uniform" and stride is None:
        needed = protocol.clip_len
    else:
        needed = (protocol.clip_len - 1) * protocol.frame_interval + 1
    if num_frames >= needed:
        return None
    return (
        f"video has {num_frames} frames, fewer than one clip spans ({needed}); "
        "frames repeat, as in the official test protocol"
    )


def _clip(frames: list[int], times: list[float], fps: float) -> Clip:
    first, last = min(frames), max(frames)
    # A frame shows until the next one starts; the last frame for one nominal frame period.
    end = times[last + 1] if last + 1 < len(times) else times[last] + 1.0 / fps
    return Clip(frames=list(frames), start=times[first], end=end)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
