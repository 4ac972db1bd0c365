"""Colours as the official pipeline decodes them, whatever the stream's colour tags say; AV1 at all.

OpenCV converts every stream with BT.601 coefficients and limited range (full range only for
``yuvj*`` formats). ffmpeg, and decord (the official pipeline's decoder), follow the stream's
tags: a BT.709 file (nearly every HD phone or camera video) or a full-range VP9 file has other
colours there. The references here are ffmpeg's own frames and decord's; the OpenCV frames of
the same files are checked to differ, so each test meets the case it is about. These files, and
AV1 (which the opencv-python wheels cannot decode), are decoded with PyAV (pyav_capture.py).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import media  # tests/media.py
from vswin_cli import video as video_module
from vswin_cli.pyav_capture import PyAVCapture, conversion_opencv_ignores
from vswin_cli.video import iter_clips, probe, read_video
from vswin_cli.sampling import Clip

SIZE = (96, 64)
BT709 = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]
INTERLACED = ["-flags", "+ilme+ildct"]


@pytest.fixture(scope="session")
def tagged(tmp_path_factory) -> dict[str, Path]:
    media.require_ffmpeg()
    d = tmp_path_factory.mktemp("colour")
    v: dict[str, Path] = {}
    v["bt709_h264"] = media.encode(d / "bt709.mp4", frames=12, size=SIZE, extra=BT709)
    v["bt709_full_h264"] = media.encode(d / "bt709_full.mp4", frames=12, size=SIZE, pix_fmt="yuvj420p", extra=BT709)
    v["bt709_vp9"] = media.encode(d / "bt709.webm", frames=12, size=SIZE, codec="libvpx-vp9", extra=["-deadline", "realtime", *BT709])
    v["full_range_vp9"] = media.encode(d / "full.webm", frames=12, size=SIZE, codec="libvpx-vp9",
                                       extra=["-deadline", "realtime", "-color_range", "pc"])
    # 1080i camcorders and broadcast MPEG-2 are interlaced and BT.709.
    v["bt709_interlaced_h264"] = media.encode(d / "bt709_interlaced.mp4", frames=12, size=SIZE,
                                              extra=[*INTERLACED, "-x264opts", "interlaced=1", *BT709])
    v["bt709_interlaced_mpeg2"] = media.encode(d / "bt709_interlaced.mkv", frames=12, size=SIZE, codec="mpeg2video",
                                               extra=[*INTERLACED, "-top", "1", *BT709])
    v["bt709_rot90"] = media.rotated(media.encode(d / "bt709_upright.mp4", frames=6, size=SIZE, extra=BT709),
                                     d / "bt709_rot90.mp4", 90)
    v["bt709_long"] = media.encode(d / "bt709_long.mp4", frames=60, size=SIZE, extra=["-g", "10", "-movflags", "+faststart", *BT709])
    v["bt709_truncated"] = media.truncated(v["bt709_long"], d / "bt709_truncated.mp4", 0.6)
    v["bt709_corrupt"] = media.corrupted(v["bt709_long"], d / "bt709_corrupt.mp4", start=0.5, length=0.1)
    # Tags whose conversion OpenCV already gets right.
    v["untagged"] = media.encode(d / "untagged.mp4", frames=12, size=SIZE)
    v["bt601"] = media.encode(d / "bt601.mp4", frames=12, size=SIZE, extra=["-colorspace", "bt470bg", "-color_range", "tv"])
    v["untagged_mjpeg"] = media.encode(d / "untagged.avi", frames=12, size=SIZE, codec="mjpeg", pix_fmt="yuvj420p")
    v["untagged_vp9"] = media.encode(d / "untagged.webm", frames=12, size=SIZE, codec="libvpx-vp9", extra=["-deadline", "realtime"])
    return v


TAGGED = ["bt709_h264", "bt709_full_h264", "bt709_vp9", "full_range_vp9", "bt709_interlaced_h264",
          "bt709_interlaced_mpeg2", "bt709_rot90"]
OPENCV_RIGHT = ["untagged", "bt601", "untagged_mjpeg", "untagged_vp9"]


def all_frames(path: Path, threads: int = 0) -> np.ndarray:
    """Every frame through read_video (a plan that keeps them all), RGB."""
    info = probe(path)
    clip = Clip(frames=list(range(info.frames)), start=0.0, end=info.duration)
    video = read_video(path, lambda info: [clip] if info.frames == len(clip.frames) else [], decoder_threads=threads)
    return np.stack(video.clip_frames(video.clips[0]))


def opencv_frames(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return np.stack(frames)
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("name", TAGGED)
def test_tagged_streams_give_ffmpegs_colours(tagged, name):
    path = tagged[name]
    reference = media.ffmpeg_frames(path)
    assert mean_difference(all_frames(path), reference) == 0.0
    if name != "bt709_rot90":  # OpenCV turns this one by 90 degrees too; its colours are bt709_h264's case
        assert mean_difference(opencv_frames(path), reference) > 2.0  # what OpenCV alone gives: other colours


@pytest.mark.parametrize("name", TAGGED)
def test_tagged_streams_give_decords_colours(tagged, name):
    """decord 0.6.0, which the official mmaction2 pipeline decodes with (it turns rotated videos
    upright too)."""
    if importlib.util.find_spec("decord") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("decord is part of the test extra; CI must have it")
        pytest.skip("decord not installed (pip install -e '.[test]' installs it on Linux x86-64)")
    import decord

    path = tagged[name]
    reader = decord.VideoReader(str(path))
    official = reader.get_batch(list(range(len(reader)))).asnumpy()
    assert mean_difference(all_frames(path), official) == 0.0


def test_which_streams_need_the_tags_followed(tagged):
    reasons = {name: conversion_opencv_ignores(tagged[name]) for name in TAGGED + OPENCV_RIGHT}
    assert reasons["bt709_h264"] == "BT.709 colour matrix"
    assert reasons["full_range_vp9"] == "full range"
    assert reasons["bt709_full_h264"] == "BT.709 colour matrix"  # yuvj: OpenCV gets the range right already
    assert all(reasons[name] for name in TAGGED)
    assert not any(reasons[name] for name in OPENCV_RIGHT)


@pytest.mark.parametrize("name", OPENCV_RIGHT)
def test_streams_opencv_converts_right_stay_with_opencv(tagged, name):
    path = tagged[name]
    reader = video_module._Reader(path, video_module.check_file(path))
    try:
        assert not isinstance(reader.capture, PyAVCapture)
    finally:
        reader.release()
    assert mean_difference(all_frames(path), media.ffmpeg_frames(path)) == 0.0


def described(path: Path) -> tuple:
    info = probe(path)
    return (info.frames, info.container_frames, info.fps, info.duration, info.width, info.height, info.rotation,
            info.codec, info.variable_frame_rate, info.timestamps.tolist(), info.warnings)


@pytest.mark.parametrize("name", ["bt709_h264", "bt709_vp9", "bt709_rot90", "bt709_truncated", "bt709_interlaced_h264"])
def test_a_tagged_file_is_described_and_sampled_as_opencv_would(tagged, name, monkeypatch):
    """Only the colours change: frame count, times, rate, size, rotation, codec and warnings (of
    a truncated file too) are those the OpenCV path gives for the same file."""
    path = tagged[name]
    with_tags = described(path)
    monkeypatch.setattr(video_module, "why_pyav_decodes", lambda path, codec: None)
    assert described(path) == with_tags


@pytest.mark.parametrize("name", ["untagged", "untagged_mjpeg", "untagged_vp9", "bt601"])
def test_pyav_decoding_gives_opencvs_frames_where_colours_agree(tagged, name, monkeypatch):
    """The PyAV path forced on files OpenCV converts right: the same description and pixels."""
    path = tagged[name]
    expected, frames = described(path), opencv_frames(path)
    monkeypatch.setattr(video_module, "why_pyav_decodes", lambda path, codec: "forced")
    reader = video_module._Reader(path, video_module.check_file(path))
    try:
        assert isinstance(reader.capture, PyAVCapture)
    finally:
        reader.release()
    assert described(path) == expected
    assert mean_difference(all_frames(path), frames) == 0.0


def test_damaged_tagged_files_keep_the_frames_they_have(tagged):
    info = probe(tagged["bt709_truncated"])
    assert 0 < info.frames < 60
    assert f"decoded {info.frames} of 60 frames" in info.warnings[0]
    complete = all_frames(tagged["bt709_long"])
    assert mean_difference(all_frames(tagged["bt709_truncated"]), complete[:info.frames]) == 0.0
    # Garbage in the middle: the damaged packets are skipped and decoding goes on, as ffmpeg does
    # (OpenCV gives up at the damage; here it decodes 20 frames of the same file).
    info = probe(tagged["bt709_corrupt"])
    assert info.frames == media.ffprobe_frame_count(tagged["bt709_corrupt"]) and info.frames < 60
    assert f"decoded {info.frames} of 60 frames" in info.warnings[0]


def test_tagged_frames_are_the_same_for_any_thread_count_and_read_path(tagged):
    path = tagged["bt709_long"]
    frames = all_frames(path)
    assert mean_difference(all_frames(path, threads=1), frames) == 0.0
    # Sliding windows (iter_clips) and the second pass (a plan the container's count got wrong).
    plan = lambda info: [Clip(frames=list(range(s, s + 8)), start=0.0, end=1.0) for s in range(0, info.frames - 8, 10)]
    info, clips, stream = iter_clips(path, plan)
    for clip, clip_frames in stream:
        assert mean_difference(np.stack(clip_frames), frames[list(clip.frames)]) == 0.0
    calls = []

    def plan_once_wrong(info):
        calls.append(info.frames)
        return [Clip(frames=[info.frames - 1], start=0.0, end=1.0)] if len(calls) > 1 else [Clip(frames=[0], start=0.0, end=1.0)]

    video = read_video(path, plan_once_wrong)
    assert mean_difference(video.frames[info.frames - 1], frames[-1]) == 0.0


@pytest.fixture(scope="session")
def av1(tmp_path_factory) -> dict[str, Path]:
    media.require_ffmpeg()
    if "libaom-av1" not in media.encoders():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("this ffmpeg has no AV1 encoder (libaom-av1); CI must test AV1")
        pytest.skip("this ffmpeg has no AV1 encoder (libaom-av1)")
    d = tmp_path_factory.mktemp("av1")
    fast = ["-cpu-used", "8", "-crf", "30"]
    return {
        "mp4": media.encode(d / "av1.mp4", frames=12, size=SIZE, codec="libaom-av1", extra=fast),
        "webm_bt709": media.encode(d / "av1.webm", frames=12, size=SIZE, codec="libaom-av1", extra=[*fast, *BT709]),
    }


@pytest.mark.parametrize("name", ["mp4", "webm_bt709"])
def test_av1_which_opencv_cannot_decode_is_read(av1, name):
    path = av1[name]
    assert not cv2.VideoCapture(str(path), cv2.CAP_FFMPEG).grab()  # OpenCV alone: no frame at all
    info = probe(path)
    assert (info.frames, info.codec, info.width, info.height) == (12, "AV01", *SIZE)
    assert info.fps == 25.0 and info.warnings == ()
    np.testing.assert_allclose(info.timestamps, np.array(media.ffprobe_times(path)) - media.ffprobe_times(path)[0], atol=1e-3)
    assert mean_difference(all_frames(path), media.ffmpeg_frames(path)) == 0.0


def test_pyav_reads_interlaced_formats_it_cannot_copy(tmp_path, monkeypatch):
    """NTSC DV (interlaced 4:1:1), which PyAV cannot copy through an array: converted as flagged
    (field by field) rather than failing, a fraction of a level from ffmpeg's whole-frame colours."""
    media.require_ffmpeg()
    path = media.encode(tmp_path / "ntsc.dv", frames=6, size=(720, 480), fps=30000 / 1001, codec="dvvideo",
                        pix_fmt="yuv411p", extra=["-flags", "+ilme+ildct"])
    monkeypatch.setattr(video_module, "why_pyav_decodes", lambda path, codec: "forced")
    frames = all_frames(path)
    assert frames.shape == (6, 480, 720, 3)
    assert mean_difference(frames, media.ffmpeg_frames(path)) < 1.0
