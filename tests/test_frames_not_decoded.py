"""Frames no kept frame needs are not decoded, and the kept frames and every frame's time stay
exactly what a full decode gives.

H.264 and HEVC B-frames are mostly non-reference frames: nothing is predicted from them, so a
frame the plan does not keep can be left undecoded (FFmpeg's skip_frame) without changing any
other frame. That is about a third of the decoding work of an x264 file. The count and the times
still cover every frame (taken from the packets), so sampling does not change. Every expected frame and
time here is ffmpeg's or ffprobe's.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import media  # tests/media.py
from vswin_cli.pyav_capture import DecodeAgain, open_pyav
from vswin_cli.sampling import Clip
from vswin_cli.video import probe, read_video

SIZE = (64, 48)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    media.require_ffmpeg()
    d = tmp_path_factory.mktemp("bframes")
    v = {
        # x264's defaults: 3 B-frames, the middle one a reference (b-pyramid)
        "x264": media.encode(d / "x264.mp4", frames=60, size=SIZE),
        # long B runs, open GOPs: leading B-frames reference the previous GOP
        "open_gop": media.encode(d / "open_gop.mkv", frames=90, size=SIZE,
                                 extra=["-bf", "8", "-x264-params", "b-pyramid=strict:open-gop=1:keyint=30"]),
        "hevc": media.encode(d / "hevc.mkv", frames=60, size=SIZE, codec="libx265"),
        "interlaced": media.encode(d / "interlaced.mp4", frames=40, size=SIZE, extra=["-flags", "+ildct+ilme", "-bf", "3"]),
        # variable frame rate: the times of the frames not decoded come from their packets
        "vfr": media.encode(d / "vfr.mp4", frames=40, size=SIZE, times=[i / 25 + (0.3 if i >= 20 else 0.0) for i in range(40)]),
    }
    # Cut at a time between keyframes without re-encoding: an MP4 edit list whose first packets
    # decode only as references, and (open GOP) leading frames FFmpeg never gives.
    v["cut"] = d / "cut.mp4"
    media.ffmpeg("-ss", "1.3", "-i", str(v["open_gop"]), "-c", "copy", str(v["cut"]))
    return v


def frames_of(path: Path, wanted: list[int], threads: int = 0) -> tuple[list[float], dict[int, np.ndarray]]:
    video = read_video(path, lambda info: [Clip(frames=wanted, start=0.0, end=0.0)], decoder_threads=threads)
    return list(video.info.timestamps), video.frames


def undecoded(path: Path, wanted: frozenset[int], threads: int = 0) -> tuple[int, int]:
    """(frames grabbed, frames skipped) when only ``wanted`` will be retrieved."""
    capture = open_pyav(path, cv2.VideoCapture(str(path)), threads)
    assert capture is not None
    capture.decode_only(wanted)
    grabbed = 0
    while capture.grab():
        grabbed += 1
    capture.release()
    return grabbed, capture.frames_skipped


@pytest.mark.parametrize("name", ["x264", "open_gop", "hevc", "interlaced", "vfr", "cut"])
def test_kept_frames_and_all_times_are_ffmpegs(files, name):
    path = files[name]
    official = media.ffmpeg_frames(path)
    times = media.ffprobe_times(path)
    count = len(official)
    wanted = list(range(count // 4, count - 3, 3))  # a sparse clip, as the Kinetics plans sample
    for threads in (1, 3):
        stamps, frames = frames_of(path, wanted, threads)
        assert len(stamps) == count
        np.testing.assert_allclose(stamps, np.array(times) - times[0], atol=1e-6)
        for index in wanted:
            assert np.array_equal(frames[index], official[index]), (name, threads, index)
    grabbed, skipped = undecoded(path, frozenset(wanted))
    assert grabbed == count and skipped > 0  # some frames were indeed left undecoded


def test_probing_skips_the_non_reference_frames(files):
    path = files["x264"]
    info = probe(path)
    assert info.frames == media.ffprobe_frame_count(path) == 60
    np.testing.assert_allclose(info.timestamps, np.arange(60) / 25, atol=1e-6)
    grabbed, skipped = undecoded(path, frozenset())
    # x264's defaults make about half the frames non-reference B-frames
    assert grabbed == 60 and 20 <= skipped <= 40


def test_every_frame_wanted_decodes_every_frame(files):
    grabbed, skipped = undecoded(files["x264"], frozenset(range(60)))
    assert (grabbed, skipped) == (60, 0)


def test_a_damaged_file_gives_the_frames_of_a_full_decode(files, tmp_path):
    """A packet that fails to decode, or a frame FFmpeg flags as damaged, sends the file back to a
    full decode (how damage is concealed depends on every frame decoded before it): the same
    frames and count as reading every frame."""
    damaged = media.corrupted(files["x264"], tmp_path / "damaged.mp4", start=0.6, length=0.05)
    with pytest.raises(DecodeAgain):
        undecoded(damaged, frozenset({0}), threads=1)
    every = read_video(damaged, lambda info: [Clip(frames=list(range(info.frames)), start=0.0, end=0.0)], decoder_threads=1)
    wanted = [i for i in range(0, every.info.frames, 4)]
    stamps, frames = frames_of(damaged, wanted, threads=1)
    assert len(stamps) == every.info.frames
    np.testing.assert_allclose(stamps, every.info.timestamps)
    for index in wanted:
        assert np.array_equal(frames[index], every.frames[index])


def test_a_frame_outside_the_announced_set_cannot_be_retrieved(files):
    path = files["x264"]
    capture = open_pyav(path, cv2.VideoCapture(str(path)), 1)
    assert capture is not None
    capture.decode_only(frozenset({10}))
    retrieved = []
    try:
        with pytest.raises(RuntimeError, match="outside decode_only"):
            while capture.grab():
                retrieved.append(capture.retrieve_rgb())
    finally:
        capture.release()
    assert len(retrieved) >= 1  # frame 0 at least; the first non-reference B-frame raises
