"""Files with several video streams are read from the stream decord (the official pipeline's
decoder) reads, which is not always the first.

decord asks FFmpeg 4.1's ``av_find_best_stream``: the stream with the most frames seen while
probing (a one-picture cover loses to any video), then the highest bit rate, then the first;
unlike later FFmpeg it ignores the "default" flag. Such files: a cover picture muxed as the first
track, dual-camera recordings (dashcams write front and rear as two tracks of one MP4), files
with a low-resolution preview track. Reading the first stream, as OpenCV does, classified the
cover picture (one frame) or the other camera. Every expected frame here is decord's.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import media  # tests/media.py
from test_stream_changes import all_frames  # every frame through read_video, with the warnings
from vswin_cli.video import probe

BIG, SMALL = (64, 48), (32, 24)  # widths decord reads (it mangles some others, e.g. 48)


@pytest.fixture(scope="module")
def streams(tmp_path_factory) -> dict[str, Path]:
    media.require_ffmpeg()
    d = tmp_path_factory.mktemp("streams")
    big = media.encode(d / "big.mp4", frames=20, size=BIG, extra=["-b:v", "400k"])
    small = media.encode(d / "small.mp4", frames=20, size=SMALL, extra=["-b:v", "20k"])
    cover = d / "cover.png"
    cv2.imwrite(str(cover), np.full((40, 30, 3), (40, 60, 200), np.uint8))
    v = {
        # a cover picture stored as the first track (not flagged as a cover): decord reads the video
        "cover_first": d / "cover_first.mkv",
        # a small, low bit rate preview first: decord reads the second, bigger stream
        "preview_first": d / "preview_first.mp4",
        # the main camera first, the second at a lower bit rate: decord reads the first
        "main_first": d / "main_first.mp4",
        # the second stream flagged "default": decord (FFmpeg 4.1) ignores the flag and reads the first
        "default_second": d / "default_second.mkv",
        # a thumbnail flagged as the cover, as yt-dlp embeds it: the video, no warning
        "thumbnail": d / "thumbnail.mp4",
    }
    media.ffmpeg("-i", str(cover), "-i", str(big), "-map", "0", "-map", "1", "-c", "copy", str(v["cover_first"]))
    media.ffmpeg("-i", str(small), "-i", str(big), "-map", "0", "-map", "1", "-c", "copy", str(v["preview_first"]))
    media.ffmpeg("-i", str(big), "-i", str(small), "-map", "0", "-map", "1", "-c", "copy", str(v["main_first"]))
    media.ffmpeg("-i", str(small), "-i", str(big), "-map", "0", "-map", "1", "-c", "copy",
           "-disposition:v:0", "0", "-disposition:v:1", "default", str(v["default_second"]))
    media.ffmpeg("-i", str(big), "-i", str(cover), "-map", "0", "-map", "1", "-c:v:0", "copy", "-c:v:1", "mjpeg",
           "-disposition:v:1", "attached_pic", str(v["thumbnail"]))
    return v


@pytest.mark.parametrize("name, size, stream", [
    ("cover_first", BIG, 1), ("preview_first", BIG, 1), ("main_first", BIG, 0), ("default_second", SMALL, 0),
])
def test_the_stream_decord_reads_is_read(streams, name, size, stream):
    path = streams[name]
    expected = media.decord_frames(path)
    frames, warnings = all_frames(path)
    assert frames.shape == (20, size[1], size[0], 3) == expected.shape
    np.testing.assert_array_equal(frames, expected)
    assert f"the file has 2 video streams; read stream #{stream} ({size[0]}x{size[1]}), the one the official " \
           "pipeline's decoder reads" in warnings
    info = probe(path)
    assert (info.frames, info.width, info.height) == (20, *size)


def test_a_second_stream_is_described_by_its_own_figures(streams):
    """Frame rate, codec and times are those of the stream read (the cover has none of its own)."""
    info = probe(streams["cover_first"])
    assert (info.fps, info.codec, info.frames) == (25.0, "h264", 20)
    np.testing.assert_allclose(np.diff(info.timestamps), 0.04, atol=1e-6)


def test_a_thumbnail_flagged_as_cover_is_not_read_and_not_warned_about(streams):
    path = streams["thumbnail"]
    frames, warnings = all_frames(path)
    np.testing.assert_array_equal(frames, media.decord_frames(path))
    assert frames.shape == (20, BIG[1], BIG[0], 3)
    assert not any("video streams" in warning for warning in warnings)
