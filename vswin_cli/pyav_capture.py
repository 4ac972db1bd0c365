"""Decoding with PyAV the streams OpenCV decodes differently from the official pipeline, or not at all.

OpenCV's FFmpeg backend converts every frame to BGR with BT.601 coefficients and takes the range
from the pixel format alone (full range only for ``yuvj*``): it ignores the stream's colour tags
(opencv#20513, #24185). The official pipeline decodes with decord, whose FFmpeg scale filter
follows each frame's tags, as ffmpeg itself does. Nearly every HD phone or camera video is tagged
BT.709; OpenCV's frames of such a file differ from decord's by about 8 of 255 on every pixel.
For those streams ``video.py`` decodes with PyAV instead (the same FFmpeg libraries, with the
converter told the frame's tags), which gives decord's and ffmpeg's pixels exactly. AV1, which
the opencv-python wheels cannot decode at all, goes the same way.

``PyAVCapture`` has the part of ``cv2.VideoCapture`` that video.py uses (``grab``, ``get``,
``release``), with OpenCV's meanings, so that a file is described, sampled and turned upright the
same way whichever library decodes it; only the pixels change. Its frames come from
``retrieve_rgb``, already RGB (OpenCV's ``retrieve`` gives BGR).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

# FFmpeg's AVColorSpace values whose coefficients differ from BT.601, the only ones OpenCV uses.
# Unspecified (2), reserved (3), BT.470BG (5) and SMPTE 170M (6) are BT.601 in FFmpeg too; YCgCo
# (8) and the newer ones are BT.601 in decord's FFmpeg 4.1, so OpenCV already matches it there.
_NOT_BT601 = {1: "BT.709", 4: "FCC", 7: "SMPTE 240M", 9: "BT.2020", 10: "BT.2020"}
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG
# Codecs the opencv-python wheels' FFmpeg cannot decode (for AV1 it has only the hardware-accelerated
# decoder, so every AV1 file failed with "no decodable frames"); PyAV's wheels bring dav1d.
_OPENCV_CANNOT_DECODE = {"av01": "AV1"}


def why_pyav_decodes(path: Path, opencv_codec: str) -> str | None:
    """Why PyAV, not OpenCV, should decode this file (``None``: OpenCV decodes it right).

    ``opencv_codec``: the codec's four-character code as OpenCV's capture of the file reports it.
    """
    codec = _OPENCV_CANNOT_DECODE.get(opencv_codec.lower())
    if codec is not None:
        return f"{codec}, which OpenCV cannot decode"
    return conversion_opencv_ignores(path)


def conversion_opencv_ignores(path: Path) -> str | None:
    """What about this file's first video stream OpenCV would convert wrongly (``None``: nothing).

    Read from the stream's parameters, which FFmpeg fills from the codec's headers when it opens
    the file (no frame is converted). ``None`` too when PyAV cannot open the file: OpenCV then
    opens it or explains why not, as for any file.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            context = container.streams.video[0].codec_context
            matrix, colour_range, pixel_format = context.colorspace, context.color_range, context.format
    except (av.FFmpegError, OSError, ValueError, UnicodeError):
        return None
    reasons = []
    if matrix in _NOT_BT601:
        reasons.append(f"{_NOT_BT601[matrix]} colour matrix")
    if colour_range == _FULL_RANGE and _limited_unless_told(pixel_format):
        reasons.append("full range")
    return " and ".join(reasons) or None


def _limited_unless_told(pixel_format: av.VideoFormat | None) -> bool:
    """Whether OpenCV reads this format as limited range: YUV, except the ``yuvj*`` (JPEG) formats.
    RGB, grey and palette formats have no range to get wrong."""
    if pixel_format is None or pixel_format.is_rgb or len(pixel_format.components) < 3:
        return False
    return not pixel_format.name.startswith("yuvj")


class PyAVCapture:
    """A file's first video stream decoded with PyAV, behind OpenCV's capture interface.

    ``description`` is OpenCV's capture of the same file, opened but never read: the container's
    claims (frame count, frame rate, codec, size, rotation) come from it, so a file is described
    exactly as when OpenCV decodes it. Frames, their times and their pixels come from PyAV.
    """

    def __init__(self, path: Path, description: cv2.VideoCapture, threads: int = 0) -> None:
        self._description = description
        self._container = av.open(str(path))
        try:
            self._stream = self._container.streams.video[0]
            context = self._stream.codec_context
            context.thread_count = threads  # 0: one per core, as OpenCV's default
            context.thread_type = "AUTO"  # frame and slice threads, as OpenCV; same frames as one thread
        except BaseException:
            self._container.close()
            raise
        self._frames = self._decoded_frames()
        self._frame: av.VideoFrame | None = None
        self._turns: int | None = None  # quarter turns that show frames upright, from the first frame

    def grab(self) -> bool:
        self._frame = next(self._frames, None)
        return self._frame is not None

    def retrieve_rgb(self) -> np.ndarray | None:
        """The grabbed frame, upright, RGB uint8 (``None`` if it cannot be converted). Unlike
        OpenCV's ``retrieve`` (BGR), FFmpeg's converter gives RGB directly: no channel swap after."""
        frame = self._frame
        if frame is None:
            return None
        try:
            rgb = _rgb(frame)
        except (av.FFmpegError, ValueError):
            return None
        if self._turns is None:
            # The display matrix, as FFmpeg attaches it to every frame; OpenCV turns all frames
            # by the stream's, which is the same one.
            self._turns = round(frame.rotation / 90) % 4
        return np.ascontiguousarray(np.rot90(rgb, self._turns)) if self._turns else rgb

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_POS_MSEC:
            return self._time_ms()
        return self._description.get(prop)

    def release(self) -> None:
        self._container.close()
        self._description.release()

    def _decoded_frames(self) -> Iterator[av.VideoFrame]:
        """Every frame, in presentation order; a damaged packet is skipped and decoding goes on, as
        ffmpeg does (OpenCV stops at the damage)."""
        context = self._stream.codec_context
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError:
                # The container cannot be read further (truncated, damaged): drain the decoder.
                try:
                    yield from context.decode(None)
                except av.FFmpegError:
                    pass
                return
            try:
                yield from packet.decode()
            except av.FFmpegError:
                continue

    def _time_ms(self) -> float:
        """The frame's presentation time from the stream's start, as OpenCV's ``CAP_PROP_POS_MSEC``."""
        frame = self._frame
        if frame is None:
            return 0.0
        stamp = frame.pts if frame.pts is not None else frame.dts
        time_base = frame.time_base or self._stream.time_base  # frames drained after a read error carry none
        if stamp is None or time_base is None:
            return math.nan
        return float((stamp - (self._stream.start_time or 0)) * time_base * 1000)


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    if frame.interlaced_frame:
        # FFmpeg's frame converter (sws_scale_frame, which PyAV 17+ calls) turns frames flagged
        # interlaced field by field, placing the chroma differently from decord's whole-frame
        # conversion; a copy of the same pixels without the flag converts as decord does.
        try:
            copy = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
        except ValueError:
            pass  # a format PyAV cannot copy through an array (DV's 4:1:1): converted as flagged
        else:
            copy.colorspace, copy.color_range = frame.colorspace, frame.color_range
            frame = copy
    return frame.to_ndarray(format="rgb24")

