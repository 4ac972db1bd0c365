"""Colours as the official pipeline decodes them, whatever the stream's colour tags say; AV1 at all.

OpenCV converts every stream with BT.601 coefficients and limited range (full range only for
``yuvj*`` formats). ffmpeg, and decord (the official pipeline's decoder), follow the stream's
tags: a BT.709 file (nearly every HD phone or camera video) or a full-range VP9 file has other
colours there. The references here are ffmpeg's own frames and decord's; the OpenCV frames of
the same files are checked to differ, so each test meets the case it is about. Every file PyAV
opens is decoded with PyAV (pyav_capture.py), AV1 too (which the opencv-python wheels cannot
decode); OpenCV, which still describes every file, decodes those PyAV cannot open.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import media  # tests/media.py
from vswin_cli import video as video_module
from vswin_cli import pyav_capture
from vswin_cli.pyav_capture import PyAVCapture
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


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("name", TAGGED)
def test_tagged_streams_give_ffmpegs_colours(tagged, name):
    path = tagged[name]
    reference = media.ffmpeg_frames(path)
    assert mean_difference(all_frames(path), reference) == 0.0
    if name != "bt709_rot90":  # OpenCV turns this one by 90 degrees too; its colours are bt709_h264's case
        assert mean_difference(media.opencv_frames(path), reference) > 2.0  # what OpenCV alone gives: other colours


@pytest.mark.parametrize("name", TAGGED)
def test_tagged_streams_give_decords_colours(tagged, name):
    path = tagged[name]
    assert mean_difference(all_frames(path), media.decord_frames(path)) == 0.0


def decoder_of(path: Path) -> type:
    reader = video_module._Reader(path, video_module.check_file(path))
    try:
        return type(reader.capture)
    finally:
        reader.release()


@pytest.mark.parametrize("name", TAGGED + OPENCV_RIGHT)
def test_every_file_pyav_opens_is_decoded_by_pyav(tagged, name):
    assert decoder_of(tagged[name]) is PyAVCapture
    if name in OPENCV_RIGHT:
        assert mean_difference(all_frames(tagged[name]), media.ffmpeg_frames(tagged[name])) == 0.0


def test_a_file_pyav_cannot_open_is_decoded_by_opencv(tagged, monkeypatch):
    path = tagged["untagged"]
    expected = all_frames(path)

    def refuse(*args, **kwargs):
        raise pyav_capture.av.FFmpegError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(pyav_capture.av, "open", refuse)
    assert decoder_of(path) is cv2.VideoCapture
    assert mean_difference(all_frames(path), expected) == 0.0  # a file OpenCV converts right


def described(path: Path) -> tuple:
    info = probe(path)
    return (info.frames, info.container_frames, info.fps, info.duration, info.width, info.height, info.rotation,
            info.codec, info.variable_frame_rate, info.timestamps.tolist(), info.warnings)


@pytest.mark.parametrize("name", ["bt709_h264", "bt709_vp9", "bt709_rot90", "bt709_interlaced_h264",
                                  "untagged", "untagged_mjpeg", "untagged_vp9", "bt601"])
def test_a_file_is_described_and_sampled_as_the_opencv_path_would(tagged, name, request):
    """Only the pixels change: frame count, times, rate, size, rotation, codec and warnings are
    those the OpenCV path gives for the same file (damaged files aside: below)."""
    path = tagged[name]
    with_pyav = described(path)
    request.getfixturevalue("opencv_decodes")
    assert described(path) == with_pyav


@pytest.mark.parametrize("name", OPENCV_RIGHT)
def test_pyav_gives_opencvs_frames_where_opencv_converts_right(tagged, name, request):
    path = tagged[name]
    frames = all_frames(path)
    request.getfixturevalue("opencv_decodes")
    assert decoder_of(path) is cv2.VideoCapture
    assert mean_difference(all_frames(path), frames) == 0.0


def test_damaged_tagged_files_keep_the_frames_they_have(tagged):
    # Cut short: ffmpeg's frames, the last ones partly decoded from the cut packet (OpenCV loses
    # the frames its decoder still holds there: 27 of these 29).
    path = tagged["bt709_truncated"]
    info = probe(path)
    assert 0 < info.frames == media.ffprobe_frame_count(path) < 60
    assert f"decoded {info.frames} of 60 frames" in info.warnings[0]
    frames = all_frames(path)
    assert mean_difference(frames, media.ffmpeg_frames(path)) == 0.0
    assert mean_difference(frames[:-2], all_frames(tagged["bt709_long"])[:info.frames - 2]) == 0.0
    assert info.frames > len(media.opencv_frames(path))
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


def test_interlaced_formats_pyav_cannot_make_from_an_array_are_read_as_decord_does(tmp_path):
    """NTSC DV (interlaced 4:1:1): the frame is copied plane by plane without the interlaced flag
    (PyAV's array round trip does not know the format), then converted whole, as decord does."""
    media.require_ffmpeg()
    path = media.encode(tmp_path / "ntsc.dv", frames=6, size=(720, 480), fps=30000 / 1001, codec="dvvideo",
                        pix_fmt="yuv411p", extra=["-flags", "+ilme+ildct"])
    frames = all_frames(path)
    assert frames.shape == (6, 480, 720, 3)
    assert mean_difference(frames, media.decord_frames(path)) == 0.0
    assert mean_difference(frames, media.ffmpeg_frames(path)) < 1.0  # ffmpeg 5+ places 4:1:1 chroma differently


@pytest.mark.parametrize("pix_fmt", ["yuv422p10le", "yuv444p10le"])
def test_high_bit_depth_frames_are_decords(tmp_path, pix_fmt):
    """10-bit frames go through swscale's general path, whose chroma filter changed after decord's
    FFmpeg 4.1; nearest-neighbour chroma gives decord's frames exactly where chroma has full height
    (4:2:0 10-bit stays about 1 of 255 away, FFmpeg versions dithering 10 to 8 bits differently)."""
    media.require_ffmpeg()
    path = media.encode(tmp_path / f"{pix_fmt}.mkv", frames=6, size=SIZE, pix_fmt=pix_fmt)
    assert mean_difference(all_frames(path), media.decord_frames(path)) == 0.0
