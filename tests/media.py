"""Test videos, made on the fly with ffmpeg (or OpenCV's VideoWriter) into a given folder.

    import media                          # tests/media.py: pytest puts tests/ on sys.path
    media.require_ffmpeg()                 # skip (or fail when CI=true) without ffmpeg
    clip = media.encode(tmp_path / "a.mp4", frames=40, size=(64, 48), fps=25)

Every function returns the path it wrote. Frames are deterministic (``pattern(index, w, h)``):
a gradient that moves with the index, a pure red square in the top-left corner and a green one
in the top-right corner, so orientation can be checked on pixels. Sizes are tiny on purpose.
Independent references (``ffprobe_times``, ``ffmpeg_frames``) come from the ffmpeg tools, not
from vswin_cli.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pytest

CORNER = 8  # side of the coloured corner squares, in pixels


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def require_ffmpeg() -> None:
    """Skip the calling test without ffmpeg, except on CI (CI=true) where that is a failure."""
    if have_ffmpeg():
        return
    message = "ffmpeg/ffprobe not found on PATH (apt-get install ffmpeg) - video tests need them"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@functools.lru_cache(maxsize=None)
def encoders() -> frozenset[str]:
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return frozenset(names)


def pattern(index: int, width: int, height: int) -> np.ndarray:
    """Frame ``index`` of the test pattern, RGB uint8 (height, width, 3)."""
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = (xx * 200 // max(width - 1, 1) + 4 * index) % 256
    frame[..., 1] = (yy * 200 // max(height - 1, 1) + 2 * index) % 256
    frame[..., 2] = (60 + 3 * index) % 256
    c = min(CORNER, width // 3, height // 3) or 1
    frame[:c, :c] = (255, 0, 0)  # top-left: red
    frame[:c, width - c:] = (0, 255, 0)  # top-right: green
    return frame


def _run(args: Sequence[str], stdin: bytes | None = None) -> None:
    done = subprocess.run(["ffmpeg", "-v", "error", "-y", *args], input=stdin, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {done.stderr.decode(errors='replace')[-500:]}")


def ffmpeg(*args: str) -> None:
    """Run ffmpeg with these arguments (quiet; raises with its last words if it fails)."""
    _run(args)


def encode(
    path: Path,
    *,
    frames: int = 50,
    size: tuple[int, int] = (64, 48),
    fps: float = 25,
    codec: str = "libx264",
    pix_fmt: str | None = "yuv420p",
    times: Sequence[float] | None = None,
    extra: Sequence[str] = (),
) -> Path:
    """Encode ``frames`` pattern frames of ``size`` (w, h) with ffmpeg.

    ``times`` (seconds, one per frame) makes a variable frame rate file: each frame is stamped
    with its time and ffmpeg passes the stamps through unchanged.
    """
    width, height = size
    raw = np.stack([pattern(i, width, height) for i in range(frames)]).tobytes()
    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]
    if times is not None:
        # Commas inside a filter's arguments must be escaped from the filter-graph parser.
        expression = "+".join(f"eq(N\\,{i})*{t:.6f}" for i, t in enumerate(times))
        # A millisecond time base, so the stamps are kept as given (not rounded to 1/fps).
        args += ["-vf", f"settb=1/1000,setpts=({expression})/TB", "-fps_mode", "passthrough", "-enc_time_base", "1/1000"]
        if str(path).endswith((".mp4", ".mov")):
            args += ["-video_track_timescale", "1000"]
    args += ["-c:v", codec]
    if pix_fmt:
        args += ["-pix_fmt", pix_fmt]
    if codec in ("libx265",):
        args += ["-x265-params", "log-level=none"]
    args += [*extra, str(path)]
    _run(args, stdin=raw)
    return path


def encode_cv2(path: Path, *, frames: int = 20, size: tuple[int, int] = (34, 18), fps: float = 25, fourcc: str = "MJPG") -> Path:
    """Encode pattern frames with OpenCV's VideoWriter (no ffmpeg binary needed).

    OpenCV's writer rounds odd sizes down to even ones (33x17 becomes 32x16); use ``encode``
    with ``codec="mjpeg", pix_fmt="yuvj444p"`` for odd sizes.
    """
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {fourcc} to {path}")
    for i in range(frames):
        writer.write(np.ascontiguousarray(pattern(i, width, height)[:, :, ::-1]))
    writer.release()
    return path


def rotated(source: Path, path: Path, degrees: int) -> Path:
    """Copy ``source`` with a rotation tag (display matrix), without re-encoding."""
    _run(["-i", str(source), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(path)])
    return path


def concatenated(parts: Sequence[Path], path: Path) -> Path:
    """The parts' streams one after the other, copied as they are (no re-encoding): a stream whose
    pixel format changes where one part ends and the next begins, as some cameras write."""
    listing = path.with_name(path.stem + "-parts.txt")
    listing.write_text("".join(f"file '{part.resolve()}'\n" for part in parts))
    _run(["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(path)])
    return path


def gif(path: Path, *, frames: int = 12, size: tuple[int, int] = (40, 30), fps: float = 10) -> Path:
    return encode(path, frames=frames, size=size, fps=fps, codec="gif", pix_fmt=None)


def audio_only(path: Path, seconds: float = 0.5) -> Path:
    _run(["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac", str(path)])
    return path


def audio_with_cover(path: Path, seconds: float = 2.0) -> Path:
    """An audio file with cover art (a JPEG of the pattern), as music players tag them."""
    cover = path.with_name(path.stem + "-cover.jpg")
    cv2.imwrite(str(cover), pattern(0, 32, 24)[:, :, ::-1])
    _run(["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-i", str(cover), "-map", "0", "-map", "1",
          "-c:a", "flac" if path.suffix == ".flac" else "aac", "-c:v", "copy", "-disposition:v", "attached_pic", str(path)])
    return path


def png(path: Path) -> Path:
    cv2.imwrite(str(path), pattern(0, 32, 24)[:, :, ::-1])
    return path


def truncated(source: Path, path: Path, fraction: float) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * fraction))])
    return path


def corrupted(source: Path, path: Path, start: float = 0.5, length: float = 0.1, seed: int = 0) -> Path:
    """Overwrite a stretch of bytes in the middle of the stream with random values."""
    data = bytearray(source.read_bytes())
    rng = random.Random(seed)
    first = int(len(data) * start)
    for i in range(first, min(len(data), first + max(1, int(len(data) * length)))):
        data[i] = rng.randrange(256)
    path.write_bytes(bytes(data))
    return path


def random_bytes(path: Path, size: int = 20_000, seed: int = 1) -> Path:
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def text_file(path: Path) -> Path:
    path.write_text("this is not a video, just some text\n")
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_frames", "-select_streams", "v:0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)


def ffprobe_times(path: Path) -> list[float]:
    """Presentation times of the decoded frames, in seconds, as ffprobe reports them."""
    frames = ffprobe(path)["frames"]
    key = "best_effort_timestamp_time"
    return [float(frame[key]) for frame in frames]


def ffprobe_frame_count(path: Path) -> int:
    """How many frames ffmpeg's decoder gets out of the file (damaged packets skipped)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    return int(out.strip())


def ffprobe_rotation(path: Path) -> int:
    """The display matrix's rotation as ffprobe reports it (degrees, counter-clockwise)."""
    for stream in ffprobe(path)["streams"]:
        for side in stream.get("side_data_list", []):
            if "rotation" in side:
                return int(side["rotation"])
    return 0


def ffmpeg_frames(path: Path, threads: int | None = None) -> np.ndarray:
    """All frames as ffmpeg's own decoder shows them (auto-rotated), RGB uint8 (N, H, W, 3);
    ``threads``: the decoder's threads (ffmpeg's default otherwise)."""
    probe = ffprobe(path)
    done = subprocess.run(
        # passthrough: each decoded frame once (ffmpeg would repeat one to fill the gap a damaged
        # frame leaves in the times)
        ["ffmpeg", "-v", "error", *(["-threads", str(threads)] if threads else []), "-i", str(path),
         "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    )
    count = len(probe["frames"])
    data = np.frombuffer(done.stdout, np.uint8)
    stream = probe["streams"][0]
    width, height = int(stream["width"]), int(stream["height"])
    if ffprobe_rotation(path) % 180:
        width, height = height, width  # shown turned by 90 or 270 degrees
    return data.reshape(count, height, width, 3)


def decord_frames(path: Path) -> np.ndarray:
    """Every frame as decord 0.6.0 gives it, RGB uint8 (N, H, W, 3): the official mmaction2
    pipeline's decoder (it turns rotated videos upright too). Skips where decord is not installed
    (it is in the test extra for Linux x86-64), fails on CI."""
    if importlib.util.find_spec("decord") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("decord is part of the test extra; CI must have it")
        pytest.skip("decord not installed (pip install -e '.[test]' installs it on Linux x86-64)")
    import decord

    reader = decord.VideoReader(str(path))
    return reader.get_batch(list(range(len(reader)))).asnumpy()


def opencv_frames(path: Path) -> np.ndarray:
    """Every frame as OpenCV alone reads it, RGB uint8 (N, H, W, 3): what vswin's frames are
    checked to differ from, where OpenCV is wrong."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return np.stack(frames)
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
