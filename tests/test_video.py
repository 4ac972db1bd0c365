"""The reader (PyAV decoding, OpenCV describing; OpenCV decoding where PyAV cannot) on videos made
by tests/media.py: codecs, containers, frame rates, rotation, odd sizes and broken files. Expected
values come from ffprobe/ffmpeg or from how the files were made, never from the reader itself;
the one exception, ``sequential_frames``, checks which frames a plan keeps, not their pixels."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

import media  # tests/media.py (pytest puts tests/ on sys.path)
from vswin_cli.protocol import KINETICS, Protocol
from vswin_cli.sampling import Clip, plan_clips
from vswin_cli import video as video_module
from vswin_cli.video import VideoError, iter_clips, probe, read_video

VFR_TIMES = [0.0, 0.04, 0.08, 0.12, 0.5, 0.6, 1.5, 1.54, 1.58, 2.4, 2.44, 3.0]


@pytest.fixture(scope="session")
def lib(tmp_path_factory) -> dict[str, Path]:
    """Every test video, made once per session."""
    media.require_ffmpeg()
    d = tmp_path_factory.mktemp("videos")
    v: dict[str, Path] = {}
    v["h264"] = media.encode(d / "h264.mp4", frames=50, extra=["-g", "10", "-movflags", "+faststart"])
    v["hevc"] = media.encode(d / "hevc.mkv", frames=30, codec="libx265")
    v["vp9"] = media.encode(d / "vp9.webm", frames=30, codec="libvpx-vp9", extra=["-deadline", "realtime"])
    v["mjpeg"] = media.encode(d / "mjpeg.avi", frames=30, codec="mjpeg", pix_fmt="yuvj420p")
    v["mpeg4"] = media.encode(d / "mpeg4.avi", frames=30, codec="mpeg4")
    v["fps60"] = media.encode(d / "fps60.mp4", frames=60, fps=60)
    v["fps120"] = media.encode(d / "fps120.mp4", frames=120, fps=120, size=(32, 24))
    v["ten_bit"] = media.encode(d / "ten_bit.mp4", frames=20, pix_fmt="yuv420p10le")
    v["ten_bit_hevc"] = media.encode(d / "ten_bit.mkv", frames=20, codec="libx265", pix_fmt="yuv420p10le")
    v["one"] = media.encode(d / "one.mp4", frames=1)
    v["five"] = media.encode(d / "five.mp4", frames=5)
    v["odd_ffmpeg"] = media.encode(d / "odd.avi", frames=10, size=(33, 17), codec="mjpeg", pix_fmt="yuvj444p")
    v["cv2_writer"] = media.encode_cv2(d / "cv2_writer.avi", frames=10, size=(34, 18))
    v["gif"] = media.gif(d / "anim.gif", frames=12)
    v["vfr"] = media.encode(d / "vfr.mp4", frames=len(VFR_TIMES), times=VFR_TIMES)
    # Interlaced, as DV, broadcast MPEG-2 and 1080i camcorders (AVCHD) record.
    v["interlaced_mpeg2"] = media.encode(d / "interlaced.mpg", frames=12, codec="mpeg2video", extra=["-flags", "+ilme+ildct", "-top", "1"])
    v["interlaced_h264"] = media.encode(d / "interlaced_h264.mp4", frames=12, extra=["-flags", "+ilme+ildct", "-x264opts", "interlaced=1"])
    # The pixel format changes mid-stream: trail cameras write MJPEG whose first frame is 4:2:2.
    parts = {fmt: media.encode(d / f"part_{fmt}.avi", frames=4, codec="mjpeg", pix_fmt=fmt) for fmt in ("yuvj420p", "yuvj422p")}
    first = media.encode(d / "first_422.avi", frames=1, codec="mjpeg", pix_fmt="yuvj422p")
    v["mjpeg_422_then_420"] = media.concatenated([first, parts["yuvj420p"], parts["yuvj420p"]], d / "422_then_420.avi")
    v["mjpeg_formats_alternate"] = media.concatenated([parts["yuvj420p"], parts["yuvj422p"]] * 2, d / "alternate.avi")
    v["rot_base"] = media.encode(d / "rot_base.mp4", frames=3, size=(48, 32))
    for degrees in (90, 180, 270):
        v[f"rot{degrees}"] = media.rotated(v["rot_base"], d / f"rot{degrees}.mp4", degrees)
    v["long"] = media.encode(d / "long.avi", frames=1200, size=(32, 32), codec="mjpeg", pix_fmt="yuvj420p")
    v["short"] = media.encode(d / "short.avi", frames=130, size=(32, 32), codec="mjpeg", pix_fmt="yuvj420p")
    # broken ones
    v["moov_last"] = media.encode(d / "moov_last.mp4", frames=50, extra=["-g", "10"])
    v["trunc50"] = media.truncated(v["h264"], d / "trunc50.mp4", 0.5)
    v["trunc05"] = media.truncated(v["h264"], d / "trunc05.mp4", 0.05)
    v["trunc50_moov_last"] = media.truncated(v["moov_last"], d / "trunc50_moov_last.mp4", 0.5)
    v["trunc50_avi"] = media.truncated(v["mjpeg"], d / "trunc50.avi", 0.5)
    v["trunc05_avi"] = media.truncated(v["mjpeg"], d / "trunc05.avi", 0.05)
    v["corrupt"] = media.corrupted(v["h264"], d / "corrupt.mp4", start=0.5, length=0.05)
    v["corrupt_avi"] = media.corrupted(v["mjpeg"], d / "corrupt.avi", start=0.4, length=0.05)
    v["empty"] = media.empty(d / "empty.mp4")
    v["random"] = media.random_bytes(d / "random.mp4")
    v["text"] = media.text_file(d / "text.mp4")
    v["audio"] = media.audio_only(d / "audio.m4a")
    v["audio_mkv"] = media.audio_only(d / "audio.mka")
    v["audio_cover"] = media.audio_with_cover(d / "song.m4a")
    v["audio_cover_flac"] = media.audio_with_cover(d / "song.flac")
    v["png"] = media.png(d / "image.png")
    v["png_named_mp4"] = media.png(d / "image_named.png")
    v["png_named_mp4"] = v["png_named_mp4"].rename(d / "image.mp4")
    v["directory"] = d / "folder.mp4"
    v["directory"].mkdir()
    return v


def sequential_frames(path: Path) -> list[np.ndarray]:
    """All frames by the reader's simplest sequential read, RGB: no plan, no container claims.
    For which frames a plan keeps; their pixels are compared with ffmpeg's and decord's elsewhere."""
    reader = video_module._Reader(path, video_module.check_file(path))
    out = []
    try:
        while reader.grab():
            out.append(reader.retrieve(None))
    finally:
        reader.release()
    return out


def kinetics_plan(info):
    return plan_clips(info.frames, info.timestamps, info.fps, KINETICS)


# ---------------------------------------------------------------------------------------------
# Videos that decode


@pytest.mark.parametrize("name", ["h264", "hevc", "vp9", "mjpeg", "mpeg4", "fps60", "fps120", "ten_bit",
                                  "ten_bit_hevc", "one", "five", "odd_ffmpeg", "cv2_writer", "gif"])
def test_probe_matches_ffprobe(lib, name):
    path = lib[name]
    reference = media.ffprobe(path)
    stream = reference["streams"][0]
    info = probe(path)
    assert info.frames == len(reference["frames"])
    assert (info.width, info.height) == (int(stream["width"]), int(stream["height"]))
    num, den = map(int, stream["avg_frame_rate"].split("/"))
    assert info.fps == pytest.approx(num / den, rel=1e-3)
    assert info.rotation == 0 and not info.variable_frame_rate
    assert info.warnings == ()
    times = media.ffprobe_times(path)
    np.testing.assert_allclose(info.timestamps, np.array(times) - times[0], atol=1e-3)
    assert info.duration == pytest.approx(times[-1] - times[0] + 1 / info.fps, abs=1e-3)


def test_made_with_expected_properties(lib):
    # Guards the factory itself: the sizes, rates, pixel formats and streams the cases claim.
    for name in ("audio_cover", "audio_cover_flac"):
        (cover,) = media.ffprobe(lib[name])["streams"]  # v:0 is the cover; the audio is not listed
        assert cover["disposition"]["attached_pic"] == 1 and cover["codec_name"] == "mjpeg"
    assert media.ffprobe(lib["cv2_writer"])["streams"][0]["width"] == 34
    odd = media.ffprobe(lib["odd_ffmpeg"])["streams"][0]
    assert (odd["width"], odd["height"]) == (33, 17)
    assert media.ffprobe(lib["ten_bit"])["streams"][0]["pix_fmt"] == "yuv420p10le"
    assert media.ffprobe(lib["fps120"])["streams"][0]["avg_frame_rate"] == "120/1"


@pytest.mark.parametrize("name", ["h264", "vp9", "mjpeg", "gif", "ten_bit", "odd_ffmpeg", "cv2_writer", "five", "one"])
def test_read_video_keeps_exactly_the_planned_frames(lib, name):
    expected = sequential_frames(lib[name])
    if name != "ten_bit":  # FFmpeg versions dither 10 to 8 bits differently
        assert np.array_equal(np.stack(expected), media.ffmpeg_frames(lib[name]))
    video = read_video(lib[name], kinetics_plan)
    assert [c.frames for c in video.clips] == [c.frames for c in plan_clips(len(expected), None, 25.0, KINETICS)]
    assert set(video.frames) == {i for clip in video.clips for i in clip.frames}
    for index, frame in video.frames.items():
        assert frame.dtype == np.uint8 and frame.shape == expected[index].shape
        assert np.array_equal(frame, expected[index]), index


@pytest.mark.parametrize("name", ["h264", "hevc", "vp9", "mpeg4", "ten_bit", "corrupt", "trunc50"])
def test_frames_do_not_depend_on_decoder_threads(lib, name):
    # The engine gives each of several decoders a share of the cores; results must not change.
    default = read_video(lib[name], kinetics_plan)
    for threads in (1, 3):
        video = read_video(lib[name], kinetics_plan, decoder_threads=threads)
        assert video.info.frames == default.info.frames
        assert [c.frames for c in video.clips] == [c.frames for c in default.clips]
        assert video.frames.keys() == default.frames.keys()
        for index, frame in video.frames.items():
            assert np.array_equal(frame, default.frames[index]), (threads, index)


def test_decoder_threads_reach_ffmpeg(lib, monkeypatch):
    counts = []
    real_open = video_module._open

    def spying_open(*args, **kwargs):
        capture = real_open(*args, **kwargs)
        counts.append(capture.get(cv2.CAP_PROP_N_THREADS))
        return capture

    monkeypatch.setattr(video_module, "_open", spying_open)
    read_video(lib["h264"], kinetics_plan, decoder_threads=3)
    _, _, stream = iter_clips(lib["h264"], kinetics_plan, decoder_threads=1)
    list(stream)
    assert counts == [3.0, 1.0, 1.0]  # read_video: one pass; iter_clips: probe, then stream


def test_opencv_description_is_released_once_pyav_has_the_file(lib, monkeypatch):
    # Each open file holds FFmpeg's index of it: a fragmented MP4 with one size field damaged made
    # that 1.1 GB, and three opens at once (OpenCV's description, PyAV's, the packet scan) 3.6 GB.
    opened: list[cv2.VideoCapture] = []
    real = cv2.VideoCapture

    def recording(*args):
        capture = real(*args)
        opened.append(capture)
        return capture

    monkeypatch.setattr(video_module.cv2, "VideoCapture", recording)
    capture = video_module._open(lib["h264"], video_module.check_file(lib["h264"]))
    try:
        assert isinstance(capture, video_module.PyAVCapture)
        assert len(opened) == 1 and not opened[0].isOpened()  # while PyAV's is open and decoding
        # The container's claims are still OpenCV's.
        assert (capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == (50, 64)
        assert capture.grab() and capture.retrieve_rgb().shape == (48, 64, 3)
    finally:
        capture.release()


def test_frames_are_rgb(lib):
    frame = read_video(lib["mjpeg"], kinetics_plan).frames[0]
    # top-left corner of the pattern is pure red
    assert frame[2, 2, 0] > 200 and frame[2, 2, 1] < 60 and frame[2, 2, 2] < 60


@pytest.mark.parametrize("name", ["interlaced_mpeg2", "interlaced_h264"])
def test_interlaced_frames_are_the_decoders_frames(lib, name):
    # OpenCV 4.13 and later (FFmpeg 7+ inside) cannot convert interlaced frames to BGR; they come
    # back black or stale (the previous video's pixels) while reading reports success, so the
    # video would be labelled from garbage. pyproject keeps OpenCV below 4.13 for this.
    path = lib[name]
    assert media.ffprobe(path)["frames"][0].get("interlaced_frame") == 1  # the factory made what it claims
    reference = media.ffmpeg_frames(path)
    video = read_video(path, lambda info: [Clip(frames=list(range(info.frames)), start=0.0, end=0.0)])
    assert video.info.frames == len(reference)
    for index, expected in enumerate(reference):
        difference = np.abs(video.frames[index].astype(int) - expected).mean()
        assert difference < 2, f"frame {index} differs from ffmpeg's by {difference:.1f} on average"


def _all_frames(info):
    return [Clip(frames=list(range(info.frames)), start=0.0, end=0.0)]


def _assert_decoders_frames(frames: dict[int, np.ndarray], reference: np.ndarray) -> None:
    for index, frame in frames.items():
        difference = np.abs(frame.astype(int) - reference[index]).mean()
        assert difference < 2, f"frame {index} differs from ffmpeg's by {difference:.1f} on average"


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
@pytest.mark.parametrize("name", ["mjpeg_422_then_420", "mjpeg_formats_alternate"])
def test_a_pixel_format_change_mid_stream_gives_the_decoders_frames(lib, name, decoder, request):
    # OpenCV (4.14 and earlier, opencv#29699) converts every frame with the converter it made for
    # the first frame it converted: after a change of chroma layout the colours are garbage (and
    # read past the frame's planes), while reading reports success. PyAV converts each frame by
    # its own format; where OpenCV decodes, each format gets its own capture.
    if decoder == "opencv":
        request.getfixturevalue("opencv_decodes")
    path = lib[name]
    formats = [frame["pix_fmt"] for frame in media.ffprobe(path)["frames"]]
    assert {"yuvj420p", "yuvj422p"} == set(formats) and formats[0] != formats[-1] or name.endswith("alternate")
    reference = media.ffmpeg_frames(path)
    video = read_video(path, _all_frames)
    assert video.info.frames == len(reference)
    _assert_decoders_frames(video.frames, reference)
    # Sparse frames, as a plan takes them (frame 0 is always converted first, for the size).
    last = len(reference) - 1
    sparse = read_video(path, lambda info: [Clip(frames=[2, 6, last, 7], start=0.0, end=0.0)])
    assert set(sparse.frames) == {2, 6, 7, last}
    _assert_decoders_frames(sparse.frames, reference)
    # Streamed (sliding windows), and the second pass used when a container's count was wrong.
    _, _, stream = iter_clips(path, _all_frames)
    ((_, streamed),) = list(stream)
    _assert_decoders_frames(dict(enumerate(streamed)), reference)
    fetched = video_module._fetch(path, video_module.check_file(path), {1, 5, last}, len(reference), None)
    _assert_decoders_frames(fetched, reference)


def test_each_pixel_format_decodes_the_file_at_most_once(lib, monkeypatch, opencv_decodes):
    # With OpenCV decoding, four runs of two formats: one capture per format, each going through
    # the file once (a new capture per run would decode the start again every time).
    path = lib["mjpeg_formats_alternate"]
    grabs: list[int] = []
    real_open = video_module._open

    class Counting:
        def __init__(self, capture):
            self.capture, self.slot = capture, len(grabs)
            grabs.append(0)

        def grab(self):
            grabbed = self.capture.grab()
            grabs[self.slot] += grabbed
            return grabbed

        def __getattr__(self, name):
            return getattr(self.capture, name)

    monkeypatch.setattr(video_module, "_open", lambda *args, **kwargs: Counting(real_open(*args, **kwargs)))
    video = read_video(path, _all_frames)
    assert len(grabs) == 2 and all(count <= video.info.frames for count in grabs), grabs
    _assert_decoders_frames(video.frames, media.ffmpeg_frames(path))


def test_theora_with_an_odd_height_is_read_or_refused_not_misread(tmp_path, request):
    # OpenCV returns wrong frames (its converter refuses the odd height) while reading succeeds;
    # PyAV reads them right. Where OpenCV decodes, such a file is refused.
    media.require_ffmpeg()
    if "libtheora" not in media.encoders():
        pytest.skip("this ffmpeg has no Theora encoder")
    odd = media.encode(tmp_path / "odd.ogv", frames=6, size=(64, 47), codec="libtheora", pix_fmt="yuv420p")
    assert media.ffprobe(odd)["streams"][0]["height"] == 47
    video = read_video(odd, _all_frames)
    assert video.info.frames == 6 and (video.info.width, video.info.height) == (64, 47)
    _assert_decoders_frames(video.frames, media.ffmpeg_frames(odd))  # 0.3 of 255: FFmpeg versions differ on odd heights
    request.getfixturevalue("opencv_decodes")
    with pytest.raises(VideoError, match=r"Theora video with an odd height \(64x47\).*convert it first"):
        read_video(odd, kinetics_plan)
    with pytest.raises(VideoError, match="odd height"):
        probe(odd)
    # An even height, or chroma at full height (4:2:2, 4:4:4), reads as ffmpeg does.
    for name, size, pix_fmt in (("even.ogv", (64, 48), "yuv420p"), ("odd422.ogv", (64, 47), "yuv422p"), ("odd444.ogv", (64, 47), "yuv444p")):
        path = media.encode(tmp_path / name, frames=6, size=size, codec="libtheora", pix_fmt=pix_fmt)
        _assert_decoders_frames(read_video(path, _all_frames).frames, media.ffmpeg_frames(path))


def test_probing_reads_no_packets(lib, monkeypatch, opencv_decodes):
    # Only a second converted frame can meet a changed format; probing converts frame 0 alone.
    monkeypatch.setattr(video_module, "_format_runs", lambda *args: pytest.fail("probe looked for format changes"))
    assert probe(lib["mjpeg_422_then_420"]).frames == 9


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_videos_come_out_upright_once(lib, degrees):
    path = lib[f"rot{degrees}"]
    upright = media.ffmpeg_frames(path)  # ffmpeg applies the display matrix itself
    info = probe(path)
    assert info.rotation == (-media.ffprobe_rotation(path)) % 360 != 0
    assert (info.height, info.width) == upright.shape[1:3]
    frame = read_video(path, kinetics_plan).frames[0]
    assert np.abs(frame.astype(int) - upright[0]).mean() < 2
    # And on pixels: where the red corner went.
    red = np.argwhere((frame[..., 0] > 200) & (frame[..., 1] < 60) & (frame[..., 2] < 60))
    h, w = frame.shape[:2]
    corner = (red[:, 0].mean() < h / 2, red[:, 1].mean() < w / 2)  # (top?, left?)
    red_ref = np.argwhere((upright[0][..., 0] > 200) & (upright[0][..., 1] < 60) & (upright[0][..., 2] < 60))
    assert corner == (red_ref[:, 0].mean() < h / 2, red_ref[:, 1].mean() < w / 2)
    if degrees == 180:
        assert corner == (False, False)  # red square now bottom-right
    else:
        assert frame.shape[:2] == (48, 32)


def test_variable_frame_rate_gets_true_times(lib):
    path = lib["vfr"]
    info = probe(path)
    times = media.ffprobe_times(path)
    assert info.frames == len(VFR_TIMES) == len(times)
    np.testing.assert_allclose(info.timestamps, np.array(times) - times[0], atol=1e-3)
    np.testing.assert_allclose(info.timestamps, VFR_TIMES, atol=2e-3)
    assert info.variable_frame_rate
    windows = read_video(path, lambda i: plan_clips(i.frames, i.timestamps, i.fps, Protocol(clip_len=2, frame_interval=1), stride=1.0))
    # t=0 -> frame 0, t=1 -> frame 5 (0.6 s), t=2 -> frame 8 (1.58 s), t=3 -> frame 11, too late: end-aligned [10, 11]
    assert [c.frames[0] for c in windows.clips] == [0, 5, 8, 10]
    assert windows.clips[1].start == pytest.approx(0.6, abs=2e-3)
    assert windows.clips[1].end == pytest.approx(1.54, abs=2e-3)


def test_iter_clips_streams_the_same_clips(lib):
    protocol = Protocol(clip_len=8, frame_interval=2)
    plan = lambda i: plan_clips(i.frames, i.timestamps, i.fps, protocol, stride=0.5)  # noqa: E731
    expected = read_video(lib["h264"], plan)
    info, clips, stream = iter_clips(lib["h264"], plan)
    assert clips == expected.clips and info.frames == 50
    got = list(stream)
    assert [clip for clip, _ in got] == expected.clips
    for clip, frames in got:
        for index, frame in zip(clip.frames, frames):
            assert np.array_equal(frame, expected.frames[index])


def test_frame_transform_is_applied_once_per_kept_frame(lib):
    calls = []

    def transform(frame):
        calls.append(1)
        return frame[::2, ::2]

    video = read_video(lib["long"], kinetics_plan, frame_transform=transform)
    assert len(calls) == len(video.frames) == len({i for c in video.clips for i in c.frames})
    assert next(iter(video.frames.values())).shape == (16, 16, 3)


def test_memory_does_not_grow_with_video_length(lib):
    def peak(path: Path) -> int:
        tracemalloc.start()
        try:
            # Kept frames copied into NumPy's memory, which tracemalloc sees (FFmpeg's buffers,
            # which PyAV's frames use, it does not), as the engine's resize does.
            read_video(path, kinetics_plan, frame_transform=np.copy)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    short, long = peak(lib["short"]), peak(lib["long"])  # 130 vs 1200 frames, <= 128 kept
    kept_bytes = len(read_video(lib["short"], kinetics_plan).frames) * 32 * 32 * 3
    assert short > kept_bytes  # the kept frames are what is measured
    # 9x the frames may only add per-frame bookkeeping (timestamps: under 200 bytes a frame).
    assert long - short < 1070 * 200, (short, long)


# ---------------------------------------------------------------------------------------------
# Broken or partial files: frames that decode plus a warning, or one line saying why not


@pytest.mark.parametrize("name, announced", [("trunc50", 50), ("trunc50_avi", 30), ("corrupt_avi", 30)])
def test_partial_files_decode_what_they_can_with_a_warning(lib, name, announced):
    path = lib[name]
    video = read_video(path, kinetics_plan)
    reference = media.ffmpeg_frames(path)  # ffmpeg skips a damaged packet and goes on, as we do
    decoded = len(reference)
    assert 0 < decoded < announced
    assert video.info.frames == decoded
    assert f"decoded {decoded} of {announced} frames the container announced" in " ".join(video.warnings)
    assert [c.frames for c in video.clips] == [c.frames for c in plan_clips(decoded, None, 25.0, KINETICS)]
    for index, frame in video.frames.items():  # the plan changed after decoding: second pass
        assert np.array_equal(frame, reference[index])


def test_a_name_like_an_ffmpeg_protocol_is_read_as_the_file_it_names(tmp_path, monkeypatch):
    """FFmpeg reads ``name:rest`` as a protocol: camera and ISO-time names were 'damaged', and
    ``concat:a.avi`` was read as a.avi."""
    media.encode_cv2(tmp_path / "a.avi", frames=10)
    media.encode_cv2(tmp_path / "b.avi", frames=20, size=(40, 30)).rename(tmp_path / "concat:a.avi")
    media.encode_cv2(tmp_path / "c.avi", frames=15).rename(tmp_path / "2024-05-01T10:30:00.avi")
    monkeypatch.chdir(tmp_path)
    assert (probe("concat:a.avi").frames, probe("concat:a.avi").width) == (20, 40)
    assert probe("./2024-05-01T10:30:00.avi").frames == 15
    video = read_video(Path("2024-05-01T10:30:00.avi"), kinetics_plan)
    assert video.info.frames == 15 and not video.warnings


def test_a_cut_made_without_reencoding_is_not_reported_damaged(tmp_path, monkeypatch):
    """``ffmpeg -ss ... -c copy`` keeps the frames from the keyframe before the cut and writes an
    edit list that drops them: the container counts them, no decoder shows them."""
    media.require_ffmpeg()
    source = media.encode(tmp_path / "source.mp4", frames=300, size=(64, 48), extra=["-g", "50", "-bf", "2"])
    cut = tmp_path / "cut.mp4"
    media.ffmpeg("-ss", "2.6", "-i", str(source), "-t", "8", "-c", "copy", "-movflags", "+faststart", str(cut))
    reference = media.ffmpeg_frames(cut)
    announced = int(media.ffprobe(cut)["streams"][0]["nb_frames"])
    assert announced > len(reference)  # the edit list drops the lead-in
    second_passes = []
    fetch = video_module._fetch
    monkeypatch.setattr(video_module, "_fetch", lambda *args, **kwargs: second_passes.append(args) or fetch(*args, **kwargs))
    video = read_video(cut, kinetics_plan)
    assert second_passes == []  # planned on the frames the edit list keeps: decoded once
    assert video.info.frames == len(reference)
    assert video.info.container_frames == announced
    assert not video.warnings
    for index, frame in video.frames.items():
        assert np.array_equal(frame, reference[index])
    # Cut short, the same file still says so, counting what the edit list leaves.
    short = media.truncated(cut, tmp_path / "short.mp4", 0.6)
    decoded = len(media.ffmpeg_frames(short))
    warnings = " ".join(read_video(short, kinetics_plan).warnings)
    assert f"decoded {decoded} of {len(reference)} frames the container announced ({announced} less the " \
           f"{announced - len(reference)} its edit list drops" in warnings


@pytest.mark.parametrize("name, reason", [
    ("empty", "empty file (0 bytes)"),
    ("random", "not a video"),
    ("text", "not a video (a text file)"),
    ("audio", "no video stream"),
    ("audio_mkv", "no video stream (only audio)"),
    ("audio_cover", "no video stream (only a still picture"),  # OpenCV decodes the cover art
    ("audio_cover_flac", "no video stream (only a still picture"),
    ("png", "not a video (a PNG image)"),
    ("png_named_mp4", "not a video (a PNG image)"),
    ("directory", "is a directory"),
    ("trunc05", "truncated"),
    ("trunc50_moov_last", "truncated"),
    ("trunc05_avi", "cannot be opened"),
])
def test_broken_files_fail_with_one_line_reason(lib, name, reason):
    with pytest.raises(VideoError) as caught:
        probe(lib[name])
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message and message.startswith(str(lib[name]))
    assert caught.value.exit_code == 1
    with pytest.raises(VideoError):
        read_video(lib[name], kinetics_plan)


def test_bytes_where_a_box_should_start_are_damage_not_truncation(lib, tmp_path):
    # Was: "truncated: the file ends inside its ')/\xb7' box", for a complete file with junk inside.
    data = lib["moov_last"].read_bytes()
    ftyp = int.from_bytes(data[:4], "big")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(data[:ftyp] + b"\x7f\xff\xff\xff\x01\xb7)/" + data[ftyp:])
    with pytest.raises(VideoError, match=f"damaged MP4/MOV container \\(no box where one should start, at byte {ftyp}\\)$"):
        probe(junk)


def test_a_matroska_file_of_subtitles_has_no_video_stream_rather_than_damage(tmp_path):
    # Was: "cannot be opened as a video: a damaged, truncated or audio-only Matroska/WebM file".
    media.require_ffmpeg()
    captions = tmp_path / "captions.srt"
    captions.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    subtitles = tmp_path / "subtitles.mkv"
    media.ffmpeg("-i", str(captions), str(subtitles))
    with pytest.raises(VideoError, match=r"subtitles\.mkv: no video stream \(only subtitles\)$"):
        probe(subtitles)
    cut = tmp_path / "cut.mkv"  # a file FFmpeg cannot open at all still says it may be damaged
    cut.write_bytes(subtitles.read_bytes()[:40])
    with pytest.raises(VideoError, match="a damaged, truncated or audio-only Matroska/WebM file$"):
        probe(cut)


def test_explaining_a_broken_mp4_does_not_read_its_index_into_memory(tmp_path):
    # An 'moov' box whose size field covers 1 GiB (a damaged size, or a recording's huge sample
    # tables): it was read whole to look for the tracks' handlers; 50 GiB ended probe in a traceback.
    media.require_ffmpeg()
    audio = media.audio_only(tmp_path / "audio.m4a")
    huge = tmp_path / "huge.mp4"
    with open(huge, "wb") as handle:
        data = audio.read_bytes()
        ftyp = data[:int.from_bytes(data[:4], "big")]
        handle.write(ftyp)
        handle.write((1).to_bytes(4, "big") + b"moov" + ((1 << 30) - len(ftyp)).to_bytes(8, "big"))
        handle.truncate(1 << 30)  # sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(VideoError, match="no video stream"):
            probe(huge)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, peak
    assert video_module._why_mp4(audio) == "no video stream (audio only)"  # the tracks' handlers are still read


def test_corrupt_mid_stream_decodes_or_says_why(lib):
    try:
        video = read_video(lib["corrupt"], kinetics_plan)
    except VideoError as error:
        assert "\n" not in str(error) and "no decodable frames" in str(error)
    else:
        assert video.info.frames == len(media.ffprobe(lib["corrupt"])["frames"])  # ffmpeg's count
        if video.info.frames < 50:
            assert any("of 50 frames the container announced" in w for w in video.warnings)


def test_an_avif_photo_is_not_a_one_frame_video(tmp_path):
    """FFmpeg opens AVIF/HEIF photos as one-frame videos; like a JPEG they are not videos to
    classify, and a folder's discovery passes over them."""
    from vswin_cli.inputs import discover

    media.require_ffmpeg()
    if "libaom-av1" not in media.encoders():
        pytest.skip("this ffmpeg has no AV1 encoder (libaom-av1)")
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "photo.avif"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", "-c:v", "libaom-av1",
                 "-still-picture", "1", "-cpu-used", "8", str(photo))
    assert photo.read_bytes()[4:12] == b"ftypavif"
    with pytest.raises(VideoError, match=r"photo\.avif: not a video \(an AVIF image\)$"):
        probe(photo)
    media.encode_cv2(folder / "clip.avi", frames=5)
    found = discover([folder])
    assert [v.path.name for v in found.videos] == ["clip.avi"] and found.skipped_files == 1


def test_av1_decodes_or_says_the_codec_is_not_supported(tmp_path):
    media.require_ffmpeg()
    if "libaom-av1" not in media.encoders():
        pytest.skip("this ffmpeg has no AV1 encoder (libaom-av1)")
    path = media.encode(tmp_path / "av1.mp4", frames=5, codec="libaom-av1", extra=["-cpu-used", "8", "-crf", "50"])
    try:
        info = probe(path)
    except VideoError as error:
        assert "no decodable frames (codec AV01)" in str(error)
    else:
        assert info.frames == 5


def test_missing_file_and_special_files(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "missing.mp4")
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(VideoError, match="not a regular file"):  # and does not block on open
        probe(fifo)


def test_a_file_name_that_is_not_utf8_reads_like_any_other(lib, tmp_path):
    # Linux file names are bytes; OpenCV takes UTF-8 and used to crash the process on such a
    # name, ending the whole batch. Run in a child process so that a crash fails this test alone.
    odd = os.path.join(os.fsencode(tmp_path), b"clip \xff\xfe.mp4")
    with open(odd, "wb") as f:
        f.write(lib["h264"].read_bytes())
    script = (
        "import os, sys, hashlib\n"
        "from vswin_cli.video import probe, read_video\n"
        "from vswin_cli.sampling import plan_clips\n"
        "from vswin_cli.protocol import KINETICS\n"
        "for path in (os.fsdecode(sys.argv[1].encode('utf-8', 'surrogateescape')), sys.argv[2]):\n"
        "    video = read_video(path, lambda i: plan_clips(i.frames, i.timestamps, i.fps, KINETICS))\n"
        "    digest = hashlib.sha256(b''.join(f.tobytes() for f in video.clip_frames(video.clips[0])))\n"
        "    print(probe(path).frames, len(video.clips), digest.hexdigest())\n"
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", script, os.fsdecode(odd), str(lib["h264"])],
        capture_output=True, text=True, errors="surrogateescape", timeout=120,
        cwd=Path(__file__).resolve().parents[1], env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    odd_line, plain_line = result.stdout.splitlines()
    assert odd_line == plain_line and odd_line.startswith("50 4 ")
    assert list(scratch.iterdir()) == []  # the link it was opened through is gone


def test_unreadable_file(lib, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: root reads files whatever their permissions (see the os.access test)")
    path = tmp_path / "locked.mp4"
    path.write_bytes(lib["h264"].read_bytes())
    path.chmod(0)
    with pytest.raises(VideoError, match="unreadable"):
        probe(path)


def test_unreadable_file_reported_by_access_check(lib, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == lib["h264"] else real_access(p, mode))
    with pytest.raises(VideoError, match=r"unreadable \(permission denied\)"):
        probe(lib["h264"])


def test_a_decoder_that_never_stops_is_cut_off(monkeypatch):
    """A capture whose grab() always succeeds: decoding must stop past the announced count."""
    class EndlessCapture:
        def __init__(self, *args):
            self.position = 0

        def isOpened(self):
            return True

        def set(self, *args):
            return True

        def release(self):
            pass

        def grab(self):
            self.position += 1
            return True

        def retrieve(self):
            return True, np.zeros((4, 6, 3), np.uint8)

        def get(self, prop):
            return {cv2.CAP_PROP_FRAME_COUNT: 5.0, cv2.CAP_PROP_FPS: 25.0,
                    cv2.CAP_PROP_POS_MSEC: 40.0 * (self.position - 1)}.get(prop, 0.0)

    import vswin_cli.video as video_module

    monkeypatch.setattr(video_module.cv2, "VideoCapture", EndlessCapture)
    path = Path(__file__)  # any readable regular file; the capture is fake
    info = video_module.probe(path)
    assert info.frames == 2 * 5 + 1000
    assert any("stopped decoding" in w for w in info.warnings)


def test_streaming_windows_hold_only_overlapping_frames(lib):
    protocol = Protocol(clip_len=8, frame_interval=2)

    def plan(info):
        return plan_clips(info.frames, info.timestamps, info.fps, protocol, stride=0.5)

    def peak(path: Path) -> tuple[int, int]:
        tracemalloc.start()
        try:
            _, clips, stream = iter_clips(path, plan)
            for _clip, _frames in stream:
                pass
            return tracemalloc.get_traced_memory()[1], len(clips)
        finally:
            tracemalloc.stop()

    (short, short_clips), (long, long_clips) = peak(lib["short"]), peak(lib["long"])
    assert long_clips > 8 * short_clips  # 96 windows against 11: all frames are planned ...
    window_bytes = 8 * 32 * 32 * 3
    assert long - short < 1070 * 200 + 2 * window_bytes, (short, long)  # ... yet few are held


def test_a_display_matrix_that_is_no_rotation_leaves_frames_as_coded(tmp_path):
    # An all-zero tkhd matrix: ffprobe gives no angle (INT64_MIN) and ffmpeg shows the frames as
    # coded. Was: PyAV's INT_MIN turned them three quarter turns and probe said "rotation": 232.
    media.require_ffmpeg()
    source = media.encode(tmp_path / "coded.mp4", frames=20, size=(48, 32))
    data = bytearray(source.read_bytes())
    assert data[data.find(b"tkhd") + 4] == 0  # version 0: the matrix is 36 bytes after the flags
    matrix = data.find(b"tkhd") + 4 + 4 + 36
    assert data[matrix:matrix + 4] == (1 << 16).to_bytes(4, "big")  # the identity's 1.0, about to go
    data[matrix:matrix + 36] = bytes(36)
    zeroed = tmp_path / "zero_matrix.mp4"
    zeroed.write_bytes(bytes(data))
    coded = media.ffmpeg_frames(source)  # identity matrix: as coded, (20, 32, 48, 3)
    raw = ["ffmpeg", "-v", "error", "-i", "IN", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    shown = [subprocess.run([a if a != "IN" else str(p) for a in raw], capture_output=True, check=True).stdout for p in (source, zeroed)]
    assert shown[0] == shown[1] == coded.tobytes()  # ffmpeg shows the zeroed file's frames as coded too
    info = probe(zeroed)
    assert (info.rotation, info.width, info.height) == (0, 48, 32)
    frames = read_video(zeroed, kinetics_plan).frames
    first = min(frames)
    assert frames[first].shape == (32, 48, 3) and np.abs(frames[first].astype(int) - coded[first]).mean() < 2


def test_a_false_frame_count_in_the_header_costs_no_memory(tmp_path):
    # An AVI header claiming 50 million frames: planning from the claim made arrays of 8 bytes a
    # claimed frame (0.4 GB each) before the scan found 25.
    import struct

    source = media.encode_cv2(tmp_path / "true.avi", frames=25, size=(32, 24))
    data = bytearray(source.read_bytes())
    claim = 50_000_000
    data[48:52] = struct.pack("<I", claim)  # avih.dwTotalFrames
    length = data.find(b"strh") + 8 + 32  # strh.dwLength
    data[length:length + 4] = struct.pack("<I", claim)
    false = tmp_path / "claims.avi"
    false.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        video = read_video(false, kinetics_plan, frame_transform=np.copy)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert video.info.frames == 25 and video.info.container_frames == claim
    assert peak < 50_000_000, peak
    reference = read_video(source, kinetics_plan)
    assert [c.frames for c in video.clips] == [c.frames for c in reference.clips]
    assert all(np.array_equal(video.frames[i], reference.frames[i]) for i in reference.frames)


def test_raw_video_is_named_by_its_codec(tmp_path):
    # Was "unknown": OpenCV gives raw video no four letters.
    media.require_ffmpeg()
    path = tmp_path / "raw.y4m"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "0.5", "-pix_fmt", "yuv420p", str(path))
    assert media.ffprobe(path)["streams"][0]["codec_name"] == "rawvideo"
    assert probe(path).codec == "rawvideo"


def test_one_frame_without_a_timestamp_is_at_zero(tmp_path):
    # Was: a raw H.264 stream of one frame had a NaN time, so NaN durations and clip times went
    # into the JSON, and the --stride table ended in a traceback.
    media.require_ffmpeg()
    path = tmp_path / "one.h264"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "1", "-c:v", "libx264", "-f", "h264", str(path))
    video = read_video(path, kinetics_plan)
    assert video.info.frames == 1 and list(video.info.timestamps) == [0.0]
    assert video.info.duration == pytest.approx(1 / video.info.fps)
    assert all(np.isfinite([clip.start, clip.end]).all() for clip in video.clips)


def test_an_interrupted_run_stops_every_decode_at_its_next_frame(lib):
    # Ctrl-C or SIGTERM (cli.main) ends the decodes running in other threads, rather than wait
    # for them to finish long files whose frames no one will take.
    try:
        video_module.stop_decoding()
        with pytest.raises(VideoError, match="decoding was interrupted$"):
            read_video(lib["short"], kinetics_plan)
    finally:
        video_module._stopped.clear()
    assert read_video(lib["short"], kinetics_plan).info.frames > 0


def test_a_raw_mjpeg_stream_is_a_video_not_a_jpeg_photo(tmp_path):
    # An IP camera's stream of JPEG pictures starts like a JPEG photo; it was refused as one.
    media.require_ffmpeg()
    stream = tmp_path / "camera.mjpeg"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "1", "-c:v", "mjpeg", "-f", "mjpeg", str(stream))
    video = read_video(stream, kinetics_plan)
    assert video.info.frames == len(media.ffmpeg_frames(stream)) == 10
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(stream.read_bytes())  # the same bytes named as a photo are still refused
    with pytest.raises(VideoError, match="not a video \\(a JPEG image\\)"):
        probe(photo)


def test_an_animated_png_is_a_video_and_a_still_png_is_not(tmp_path):
    # An APNG (an acTL chunk before the image data) was refused as "not a video (a PNG image)".
    media.require_ffmpeg()
    animation = tmp_path / "anim.png"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "1", "-f", "apng", str(animation))
    decoded = read_video(animation, kinetics_plan)
    reference = media.ffmpeg_frames(animation)
    assert decoded.info.frames == len(reference) == 10
    for clip in decoded.clips:
        assert np.array_equal(np.stack(decoded.clip_frames(clip)), reference[list(clip.frames)])
    still = media.png(tmp_path / "still.png")
    with pytest.raises(VideoError, match=r"not a video \(a PNG image\)$"):
        probe(still)


def test_a_matroska_count_is_an_estimate_so_its_frames_are_held_to_its_duration(tmp_path):
    # Matroska and WebM state no frame count; OpenCV's is duration x average rate. Healthy files
    # were warned as maybe truncated (audio a frame longer than the video: "decoded 50 of 51";
    # variable frame rate: "decoded 40 frames, the container announced 30").
    media.require_ffmpeg()
    with_audio = tmp_path / "with_audio.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi", "-i", "sine=d=2", "-t", "2",
                 "-c:v", "libx264", "-c:a", "aac", str(with_audio))
    times = [0.0, 0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    variable = media.encode(tmp_path / "variable.mkv", frames=len(times), times=times)
    for path in (with_audio, variable):
        info = probe(path)
        assert info.frames == len(media.ffmpeg_frames(path)) and info.container_frames is None
        assert info.warnings == (), info.warnings
    short = media.truncated(with_audio, tmp_path / "short.mkv", 0.5)
    info = probe(short)
    assert 0 < info.frames < 50
    [warning] = info.warnings
    end = re.fullmatch(r"the frames end at (\d+\.\d\d) s of the 2\.0\d s the container announced \(the file may be "
                       r"truncated or damaged\)", warning)
    assert end and abs(float(end[1]) - info.duration) < 0.05, warning  # the frames' time from the file's 0


def test_a_matroska_file_whose_frames_start_late_is_held_to_its_duration_after_that_start(tmp_path, monkeypatch):
    # A Matroska duration counts from 0: frames from 10 s to 12 s announce 12 s. The complete file
    # was warned as maybe truncated ("the frames end at 2.00 s of the 12.00 s") and, planned on
    # 300 frames, read twice. MPEG-TS durations span the frames: no lead-in there.
    media.require_ffmpeg()
    late = media.encode(tmp_path / "late.mkv", frames=50, extra=["-output_ts_offset", "10"])
    late_ts = media.encode(tmp_path / "late.ts", frames=50, extra=["-output_ts_offset", "10"])
    readers, reader = [], video_module._Reader
    monkeypatch.setattr(video_module, "_Reader", lambda *args: readers.append(args) or reader(*args))
    for path in (late, late_ts):
        readers.clear()
        decoded = read_video(path, kinetics_plan)
        assert decoded.info.frames == len(media.ffmpeg_frames(path)) == 50
        assert decoded.info.warnings == () and len(readers) == 1, (path, decoded.info.warnings)
    short = media.truncated(late, tmp_path / "short.mkv", 0.5)
    info = probe(short)
    assert 0 < info.frames < 50
    assert info.warnings == (f"the frames end at {10 + info.duration:.2f} s of the 12.00 s the container announced "
                             "(the file may be truncated or damaged)",)


def test_a_file_replaced_before_its_second_pass_is_not_read_as_one(tmp_path, monkeypatch):
    # A Matroska file cut short announces more frames than it has: planned on its claims, the
    # first pass misses the frames of the real plan, which a second pass fetches. Replaced in
    # between (rsync, cp then mv), it was scored with the other file's frames, "ok", no warning.
    media.require_ffmpeg()
    short = media.truncated(media.encode(tmp_path / "full.mkv", frames=100), tmp_path / "short.mkv", 0.5)
    other = media.encode(tmp_path / "other.mkv", frames=100, size=(48, 64))
    release = video_module._Reader.release
    passes = []

    def replace_after_the_first_pass(reader):
        release(reader)
        passes.append(reader)
        if len(passes) == 1:
            os.replace(other, short)

    monkeypatch.setattr(video_module._Reader, "release", replace_after_the_first_pass)
    with pytest.raises(VideoError, match=r"short\.mkv: the file changed while it was being read; run again to read it anew$"):
        read_video(short, kinetics_plan)
    assert len(passes) == 2  # the second pass opened the new file and refused it


def test_a_file_replaced_between_the_two_passes_is_not_read_as_one(tmp_path):
    # Was: sliding windows described the first file and scored the second (same frame count).
    path = media.encode_cv2(tmp_path / "v.avi", frames=20, size=(40, 30))
    other = media.encode_cv2(tmp_path / "other.avi", frames=20, size=(32, 24))
    info, clips, stream = iter_clips(path, kinetics_plan)
    other.replace(path)
    with pytest.raises(VideoError, match=r"v\.avi: the file changed while it was being read; run again to read it anew$"):
        next(stream)
    info, clips, stream = iter_clips(path, kinetics_plan)  # read anew: the new file, whole
    assert (info.width, len(list(stream))) == (32, len(clips))


def test_a_damaged_file_gives_the_same_frames_run_after_run(tmp_path):
    # Was: several decoder threads concealed the damage by their timing: 3 different frame sets in
    # 15 reads, and scores that a rerun or a --resume could not reproduce. A damaged file is now
    # read again with one thread, from its start: ffmpeg's own frames with one thread.
    import random

    media.require_ffmpeg()
    source = tmp_path / "source.mp4"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "4", "-c:v", "libx264", "-bf", "3",
                 "-pix_fmt", "yuv420p", str(source))
    data = bytearray(source.read_bytes())
    rng = random.Random(1)
    for _ in range(200):
        data[len(data) // 3 + rng.randrange(len(data) // 3)] = rng.randrange(256)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    reference = media.ffmpeg_frames(damaged, threads=1)

    def everything(info):
        return [Clip(frames=list(range(info.frames)), start=0.0, end=info.duration)]

    for _ in range(4):
        for threads in (0, 2):
            frames = read_video(damaged, everything, decoder_threads=threads).frames
            assert len(frames) == len(reference)
            assert all(np.array_equal(frames[i], reference[i]) for i in range(len(reference)))
        info, clips, stream = iter_clips(damaged, everything, decoder_threads=2)
        assert all(np.array_equal(f, reference[i]) for (_, fs) in stream for i, f in enumerate(fs))


def test_a_proc_file_is_not_called_empty(tmp_path):
    # /proc files report 0 bytes and hold text: was "empty file (0 bytes)".
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("no /proc on this system")
    with pytest.raises(VideoError, match=r"status: not a video \(a virtual file, as under /proc or /sys\)$"):
        probe(status)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty\.mp4: empty file \(0 bytes\)$"):
        probe(empty)
