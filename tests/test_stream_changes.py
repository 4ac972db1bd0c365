"""Streams whose picture size or pixel format changes part-way, as decord (the official pipeline's
decoder) and ffmpeg read them.

Such files come from joining recordings without re-encoding (``ffmpeg -c copy``, camera and
phone editors), from adaptive streaming and WebRTC recordings (the sender changes the size with
the bandwidth) and from broadcast captures. OpenCV converts every frame with the converter and
the size it set up for the first: after a change its frames are garbage or stale while reading
reports success. decord's scale filter converts each frame by its own format and scales it to
the stream's first size; so does vswin (PyAV), with a warning for a size change. The references
are decord's frames (Matroska/WebM/MP4) and ffmpeg's (MPEG-TS, where decord's index of a joined
file is off); OpenCV's frames of the same files are checked to differ, so each test meets its case.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import media  # tests/media.py
from vswin_cli.sampling import Clip
from vswin_cli.video import probe, read_video

SIZES = [(96, 64), (128, 96), (64, 48)]  # up, then down; 8 frames each
PART = 8


@pytest.fixture(scope="session")
def changing(tmp_path_factory) -> dict[str, Path]:
    media.require_ffmpeg()
    d = tmp_path_factory.mktemp("changes")
    v: dict[str, Path] = {}
    for container in ("mkv", "ts"):
        part = "ts" if container == "ts" else "mp4"
        parts = [media.encode(d / f"h264_{w}x{h}.{part}", frames=PART, size=(w, h), extra=["-g", "4"]) for w, h in SIZES]
        v[f"size_h264_{container}"] = media.concatenated(parts, d / f"size_h264.{container}")
        parts = [media.encode(d / f"h264_{pf}.{part}", frames=PART, size=SIZES[0], pix_fmt=pf) for pf in ("yuv444p", "yuv420p")]
        v[f"format_h264_{container}"] = media.concatenated(parts, d / f"format_h264.{container}")
    parts = [media.encode(d / f"vp9_{w}x{h}.webm", frames=PART, size=(w, h), codec="libvpx-vp9", extra=["-deadline", "realtime"])
             for w, h in SIZES[:2]]
    v["size_vp9"] = media.concatenated(parts, d / "size_vp9.webm")
    # An 8-bit then a 10-bit HEVC recording joined (an iPhone's SDR and HDR clips).
    parts = [media.encode(d / f"hevc_{pf}.ts", frames=PART, size=SIZES[0], codec="libx265", pix_fmt=pf) for pf in ("yuv420p", "yuv420p10le")]
    v["format_hevc"] = media.concatenated(parts, d / "format_hevc.mkv")
    return v


def all_frames(path: Path, threads: int = 0) -> tuple[np.ndarray, list[str]]:
    video = read_video(path, lambda info: [Clip(frames=list(range(info.frames)), start=0.0, end=0.0)], decoder_threads=threads)
    return np.stack([video.frames[i] for i in range(video.info.frames)]), video.warnings


def by_part(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Mean absolute difference of each part (8 frames)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    difference = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return [float(difference[start:start + PART].mean()) for start in range(0, len(a), PART)]


def test_a_size_change_is_scaled_to_the_first_size_as_decord_does(changing):
    frames, warnings = all_frames(changing["size_h264_mkv"])
    assert frames.shape == (3 * PART, 64, 96, 3)
    assert any("the picture size changes mid-stream (also 128x96, 64x48)" in w for w in warnings)
    official = media.decord_frames(changing["size_h264_mkv"])
    assert by_part(frames, official) == [0.0, 0.0, 0.0]  # scaled down, then up, as decord scales
    assert min(by_part(media.opencv_frames(changing["size_h264_mkv"]), official)[1:]) > 5.0  # stale or repeated frames

    frames, warnings = all_frames(changing["size_vp9"])
    assert frames.shape == (2 * PART, 64, 96, 3) and any("also 128x96" in w for w in warnings)
    assert by_part(frames, media.decord_frames(changing["size_vp9"])) == [0.0, 0.0]


def test_a_size_change_in_mpeg_ts_gives_ffmpegs_first_part(changing):
    path = changing["size_h264_ts"]
    frames, warnings = all_frames(path)
    assert frames.shape == (3 * PART, 64, 96, 3) and any("also 128x96, 64x48" in w for w in warnings)
    # ffmpeg scales with its own defaults (bicubic), so only the unscaled part is exact.
    reference = media.ffmpeg_frames(path)
    assert by_part(frames[:PART], reference[:PART]) == [0.0]


@pytest.mark.parametrize("container", ["mkv", "ts"])
def test_a_pixel_format_change_gives_each_frame_its_own_conversion(changing, container):
    path = changing[f"format_h264_{container}"]  # 4:4:4, then 4:2:0
    frames, warnings = all_frames(path)
    assert not warnings
    assert by_part(frames, media.ffmpeg_frames(path)) == [0.0, 0.0]
    if container == "mkv":
        assert by_part(frames, media.decord_frames(path)) == [0.0, 0.0]
    assert by_part(media.opencv_frames(path), frames)[1] > 20.0  # OpenCV: the 4:4:4 converter on 4:2:0 frames


def test_an_8_bit_then_10_bit_hevc_stream_reads_as_decord_does(changing):
    path = changing["format_hevc"]
    frames, _ = all_frames(path)
    eight, ten = by_part(frames, media.decord_frames(path))
    assert eight == 0.0 and ten < 1.5  # FFmpeg versions dither 10 to 8 bits differently
    assert by_part(media.opencv_frames(path), frames)[1] > 20.0


@pytest.mark.parametrize("name", ["size_h264_mkv", "format_h264_ts", "format_hevc"])
def test_changing_streams_read_the_same_for_any_thread_count(changing, name):
    frames, _ = all_frames(changing[name])
    for threads in (1, 3):
        assert np.array_equal(all_frames(changing[name], threads)[0], frames)
    assert probe(changing[name]).frames == len(frames)
