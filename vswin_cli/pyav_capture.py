"""Decoding with PyAV: every file's pixels, as the official pipeline's decoder gives them.

The official pipeline decodes with decord: FFmpeg's decoders, then FFmpeg's scale filter, which
converts each frame by its own pixel format, colour matrix and range, and scales every frame to
the stream's first size. OpenCV's FFmpeg backend gets several of these wrong while reporting
success: it converts with BT.601 and limited range whatever the stream's tags say (opencv#20513,
#24185; about 8 of 255 on every pixel of a BT.709 HD video), converts all frames with the
converter it made for the first (garbage after a pixel format change mid-stream, opencv#29699),
keeps the first size (stale or repeated frames after a resolution change, opencv#27116), stops
at the first damaged packet, and its wheels cannot decode AV1. PyAV runs the same FFmpeg
libraries with the converter told each frame's format and tags, which gives decord's pixels.

``PyAVCapture`` has the part of ``cv2.VideoCapture`` that video.py uses (``grab``, ``get``,
``release``), with OpenCV's meanings, so that a file is described, sampled and turned upright the
same way whichever library decodes it. Its frames come from ``retrieve_rgb``, already RGB
(OpenCV's ``retrieve`` gives BGR). OpenCV still decodes a file PyAV cannot open.

A file with several video streams is read from the stream decord reads (``official_stream``),
which is not always the first: a one-picture cover stored as the first track, or a second
camera's track with a higher bit rate.
"""

from __future__ import annotations

import math
import os
from array import array
from pathlib import Path
from typing import Iterator, NamedTuple

import av
import cv2
import numpy as np

_ERRORS = (av.FFmpegError, OSError, ValueError, UnicodeError)


def open_pyav(path: Path, description: cv2.VideoCapture, threads: int = 0) -> PyAVCapture | None:
    """PyAV's capture of the file's video stream (``official_stream``); ``None`` if PyAV cannot open
    the file or has no decoder for the stream (OpenCV then decodes it, or explains why it cannot)."""
    try:
        return PyAVCapture(path, description, threads)
    except _ERRORS:
        return None


def stream_types(path: Path) -> list[str] | None:
    """The kinds of the file's streams as FFmpeg opens it (``video``, ``audio``, ``subtitle``,
    ``data``, ``attachment``), or None when FFmpeg cannot open the file."""
    try:
        with av.open(file_name(path)) as container:
            return [stream.type for stream in container.streams]
    except _ERRORS:
        return None


class PyAVCapture:
    """A file's video stream (``official_stream``) decoded with PyAV, behind OpenCV's capture interface.

    ``description`` is OpenCV's capture of the same file, opened but never read: the container's
    claims (frame count, frame rate, codec, size, rotation) come from it, so a file is described
    exactly as when OpenCV decodes it. OpenCV describes the first video stream; when the stream
    read is another, the claims come from PyAV, by OpenCV's rules (``_claim``). Frames, their
    times and their pixels come from PyAV. The claims are read once PyAV has the file open, and
    OpenCV's capture is then released: each open file holds FFmpeg's index of it, which a damaged
    header can make a gigabyte (a fragment's sample count), and the decoding opens the file again.
    """

    def __init__(self, path: Path, description: cv2.VideoCapture, threads: int = 0) -> None:
        self._path = path
        self._container, self._stream = _open_stream(path, threads)
        videos = self._container.streams.video
        self._described_by_opencv = self._stream.index == videos[0].index  # OpenCV's capture reads the first
        moving = [stream for stream in videos if not stream.disposition & av.stream.Disposition.attached_pic]
        # (index, of how many, width, height) when the file has several video streams that move
        self.chosen_stream = ((self._stream.index, len(moving), self._stream.codec_context.width,
                               self._stream.codec_context.height) if len(moving) > 1 else None)
        self._wanted: frozenset[int] | None = None  # the only frames to be retrieved, when told (decode_only)
        self._again_when_damaged = False  # damage under several threads raises DecodeAgain (decode_again_when_damaged)
        self.frames_skipped = 0  # frames grabbed with only their time (decode_only)
        # Packets the container marks to be dropped, counted as they are read: the frames an MP4/MOV
        # edit list leaves out (the lead-in a cut without re-encoding keeps), which the container's
        # frame count includes and no decoder shows.
        self.discarded_packets = 0
        self._frames = self._decoded_frames()
        self._frame: av.VideoFrame | _NotDecoded | None = None
        self._size: tuple[int, int] | None = None  # (width, height) of the first frame, every frame's size out
        self.other_sizes: list[tuple[int, int]] = []  # sizes met after the first, in order (scaled to it)
        self._display_rotation: float | None = None  # the first frame's display matrix angle (counterclockwise)
        self._described = {prop: description.get(prop) for prop in _CLAIMS}  # last: nothing may fail after
        description.release()

    def decode_only(self, wanted: frozenset[int]) -> None:
        """Only the frames at these indices (and frame 0) will be retrieved; call before the first ``grab``.

        Then frames that no other frame is predicted from (H.264/HEVC's non-reference frames, most
        B-frames) and that are not wanted need not be decoded at all: every frame is still grabbed,
        with its time, and the wanted ones decode exactly as before (``_frames_decoding_only``).
        On a damaged file (where concealing the damage depends on every frame decoded before)
        ``grab`` raises :class:`DecodeAgain`: read the file again with a new capture, without this.
        """
        self._wanted = wanted | {0}

    def decode_again_when_damaged(self) -> None:
        """Raise :class:`DecodeAgain` from ``grab`` when damage shows while several threads decode;
        call before the first ``grab``. How FFmpeg's frame threads conceal damage depends on their
        timing, so a damaged file's frames differ from run to run unless it is read again with one
        thread, from its start (without this, decoding goes on with one thread from the damage)."""
        self._again_when_damaged = True

    def grab(self) -> bool:
        frame = self._frame = next(self._frames, None)
        if frame is None:
            return False
        if isinstance(frame, _NotDecoded):
            self.frames_skipped += 1
            return True
        size = (frame.width, frame.height)
        if self._size is None:
            self._size = size
        elif size != self._size and size not in self.other_sizes:
            self.other_sizes.append(size)
        return True

    def retrieve_rgb(self) -> np.ndarray | None:
        """The grabbed frame, upright, RGB uint8 (``None`` if it cannot be converted). Unlike
        OpenCV's ``retrieve`` (BGR), FFmpeg's converter gives RGB directly: no channel swap after."""
        frame = self._frame
        if frame is None or self._size is None:
            return None
        if isinstance(frame, _NotDecoded):
            raise RuntimeError(f"{self._path}: a frame outside decode_only's set was retrieved")
        try:
            rgb = _rgb(frame, self._size)
        except _ERRORS:
            return None
        if self._display_rotation is None:
            # The display matrix, as FFmpeg attaches it to every frame; OpenCV turns all frames
            # by the stream's, which is the same one.
            self._display_rotation = frame.rotation
        turns = quarter_turns(self._display_rotation)
        return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the first frame grabbed, as decoded (before any turn); None before."""
        return self._size

    @property
    def count_stated(self) -> bool:
        """Whether the container states the stream's frame count (MP4, AVI); else the count is an
        estimate from its duration (Matroska, WebM, MPEG-TS)."""
        return self._stream.frames > 0

    @property
    def lead_in_seconds(self) -> float:
        """The time before the first frame that the container's duration includes: a Matroska
        duration counts from 0, so a file whose frames start later (cut from a recording,
        ``-output_ts_offset``) announces that much more; MPEG-TS and FLV durations span the frames."""
        start, time_base = self._stream.start_time, self._stream.time_base
        if not self._container.format.name.startswith("matroska") or start is None or not time_base:
            return 0.0
        return max(0.0, float(start * time_base))

    def leading_discards(self) -> int:
        """How many of the stream's first packets the container marks to be dropped (an MP4/MOV edit
        list's lead-in), read from the packets alone up to the first run of kept ones."""
        dropped = kept = 0
        try:
            with av.open(file_name(self._path)) as container:
                for packet in container.demux(container.streams[self._stream.index]):
                    if not packet.size:
                        continue
                    if packet.is_discard:
                        dropped, kept = dropped + 1, 0
                    else:
                        kept += 1
                        if kept >= _LEAD_IN_END:
                            break
        except _ERRORS:
            return 0
        return dropped

    @property
    def codec_name(self) -> str:
        """FFmpeg's name of the stream's codec (``h264``, ``rawvideo``)."""
        return self._stream.codec_context.codec.name

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_POS_MSEC:
            return self._time_ms()
        if prop == cv2.CAP_PROP_N_THREADS:
            return float(self._stream.codec_context.thread_count)
        if not self._described_by_opencv and prop in _CLAIMS:
            # degrees clockwise, as OpenCV's CAP_PROP_ORIENTATION_META
            rotation = turned_degrees(self._display_rotation) if self._display_rotation is not None else 0
            return _claim(prop, self._container, self._stream, rotation)
        return self._described[prop]  # a KeyError: a property no code here asks a PyAVCapture for

    def release(self) -> None:
        self._frames.close()
        self._container.close()

    def _decoded_frames(self) -> Iterator[av.VideoFrame]:
        """Every frame in presentation order, for any thread count the same frames ffmpeg gives.

        A damaged packet is skipped and decoding goes on, as ffmpeg does (OpenCV stops there).
        With several threads, FFmpeg's frame threads report a damaged packet late or not at all,
        and the frames still held for reordering are lost (2 of 14 on a file cut mid-GOP). So at
        the first damaged packet (one that fails to decode, or that the demuxer flags as corrupt,
        as it does the cut-short last packet of a truncated file) the file is decoded again with
        one thread, past the frames already given: the same frames for any thread count.
        """
        order = _presentation_order(self._path, self._stream) if self._wanted is not None else None
        if order is not None and self._wanted is not None:
            try:
                yield from _frames_decoding_only(self._packets(), self._stream, order, self._wanted)
                return
            except _Damaged:
                # What a damaged frame looks like depends on the frames decoded before it, so the
                # frames already given may differ from a full decode's: only the caller can start over.
                raise DecodeAgain(f"{self._path}: damaged; read it again, decoding every frame") from None
        given = 0
        try:
            for frame in _frames(self._packets(), self._stream, stop_at_damage=self._stream.codec_context.thread_count != 1):
                given += 1
                yield frame
            return
        except _Damaged:
            if self._again_when_damaged:
                raise DecodeAgain(f"{self._path}: damaged; read it again with one thread") from None
        self._container.close()
        try:
            self._container, self._stream = _open_stream(self._path, 1)
        except _ERRORS:
            return  # the file went away meanwhile: the frames given are all there is
        for index, frame in enumerate(_frames(self._packets(), self._stream, stop_at_damage=False)):
            if index >= given:
                yield frame

    def _packets(self) -> Iterator[av.Packet]:
        """The stream's packets, from the start, counting the discarded ones."""
        self.discarded_packets = 0
        for packet in self._container.demux(self._stream):
            if packet.size and packet.is_discard:
                self.discarded_packets += 1
            yield packet

    def _time_ms(self) -> float:
        """The frame's presentation time from the stream's start, as OpenCV's ``CAP_PROP_POS_MSEC``."""
        frame = self._frame
        if frame is None:
            return 0.0
        if isinstance(frame, _NotDecoded):
            stamp, time_base = frame.pts, self._stream.time_base
        else:
            stamp = frame.pts if frame.pts is not None else frame.dts
            time_base = frame.time_base or self._stream.time_base  # frames drained after a read error carry none
        if stamp is None or time_base is None:
            return math.nan
        return float((stamp - (self._stream.start_time or 0)) * time_base * 1000)


def quarter_turns(rotation: float) -> int:
    """Counterclockwise quarter turns that show a frame upright, from its display matrix's angle
    (degrees counterclockwise, as PyAV gives it). Only quarter turns are applied, as OpenCV does;
    a matrix that is no rotation (all zeros: PyAV gives INT_MIN) leaves the frame as coded, as
    ffmpeg does."""
    if not math.isfinite(rotation) or abs(rotation) > 360 or round(rotation) % 90:
        return 0
    return round(rotation) // 90 % 4


def turned_degrees(rotation: float) -> int:
    """The degrees clockwise (OpenCV's ``CAP_PROP_ORIENTATION_META`` convention) that frames of a
    display matrix angle ``rotation`` (counterclockwise) are turned by: ``quarter_turns``' rule."""
    return -90 * quarter_turns(rotation) % 360


_CLAIMS = frozenset({cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FPS, cv2.CAP_PROP_FOURCC, cv2.CAP_PROP_FRAME_WIDTH,
                     cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_ORIENTATION_META})

# OpenCV's FOURCC for codecs whose FFmpeg name is not four letters (what OpenCV 4.12 reports for
# them); other codecs are named by FFmpeg's four-letter name, as OpenCV does (h264, hevc).
_OPENCV_FOURCC = {"mpeg4": "FMP4", "mjpeg": "MJPG", "vp8": "VP80", "vp9": "VP90", "av1": "AV01", "theora": "theo",
                  "mpeg1video": "mpg1", "mpeg2video": "mpg2", "msmpeg4v3": "MP43", "png": "MPNG", "prores": "apch",
                  "dnxhd": "AVdn", "dvvideo": "dvsd", "huffyuv": "HFYU", "utvideo": "ULRA", "dirac": "drac"}


def _claim(prop: int, container: av.container.InputContainer, stream: av.VideoStream, rotation: int) -> float:
    """What OpenCV's capture would say of ``stream`` if it read that stream (it reads the first):
    the container's frame count, else duration x frame rate; the average frame rate, else the
    stream's base rate; the coded size; the codec's four letters; the rotation."""
    if prop == cv2.CAP_PROP_FPS:
        rate = stream.average_rate if stream.average_rate and stream.average_rate > 0 else stream.base_rate
        return float(rate) if rate and rate > 0 else 0.0
    if prop == cv2.CAP_PROP_FRAME_COUNT:
        if stream.frames > 0:
            return float(stream.frames)
        seconds = container.duration / av.time_base if container.duration else 0.0
        if seconds <= 0 and stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        return float(math.floor(seconds * _claim(cv2.CAP_PROP_FPS, container, stream, rotation) + 0.5))
    if prop == cv2.CAP_PROP_FRAME_WIDTH:
        return float(stream.codec_context.height if rotation in (90, 270) else stream.codec_context.width)
    if prop == cv2.CAP_PROP_FRAME_HEIGHT:
        return float(stream.codec_context.width if rotation in (90, 270) else stream.codec_context.height)
    if prop == cv2.CAP_PROP_ORIENTATION_META:
        return float(rotation)
    name = stream.codec_context.codec.canonical_name
    code = _OPENCV_FOURCC.get(name, name if len(name) == 4 else "")
    return float(sum(ord(char) << (8 * i) for i, char in enumerate(code)) if len(code) == 4 and code.isascii() else 0)


def official_stream(container: av.container.InputContainer) -> av.VideoStream:
    """The video stream decord, the official pipeline's decoder, reads.

    decord takes FFmpeg's ``av_find_best_stream`` as it was in FFmpeg 4.1 (the version in its
    wheels): among the video streams with a decoder, the one with the most frames seen while
    probing (counted up to 5, so a one-picture cover loses to any video), then the highest bit
    rate, then the first. Later FFmpeg (PyAV's) first prefers a stream flagged "default"; with
    that flag cleared for the call, it chooses as FFmpeg 4.1 did.
    """
    videos = [stream for stream in container.streams.video if stream.codec_context is not None]
    if len(videos) < 2:
        return videos[0] if videos else container.streams.video[0]
    flags = [stream.disposition for stream in videos]
    try:
        for stream, flag in zip(videos, flags):
            stream.disposition = flag & ~av.stream.Disposition.default
        best = container.streams.best("video")
    finally:
        for stream, flag in zip(videos, flags):
            stream.disposition = flag
    return best if best in videos else videos[0]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _Damaged(Exception):
    """A packet did not decode."""


class DecodeAgain(Exception):
    """A file turned out damaged while frames were left undecoded (``PyAVCapture.decode_only``) or
    several threads decoded it (``decode_again_when_damaged``): the frames given so far may not be
    a one-thread full decode's, so the file must be read again whole, with one thread."""


def file_name(path: Path) -> str:
    """``path`` as FFmpeg (here or in OpenCV) must be given a file: absolute, because FFmpeg reads
    a relative name that starts with letters and a colon (``cam1:front.mp4``, ``concat:a.mp4``,
    ``pipe:0.mp4``) as a protocol and its address."""
    return os.path.abspath(path)


def _open_stream(path: Path, threads: int) -> tuple[av.container.InputContainer, av.VideoStream]:
    container = av.open(file_name(path))
    try:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = official_stream(container)
        context = stream.codec_context
        if context is None:
            raise ValueError("no decoder for the video stream")
        # 0: one per core, as OpenCV's default (FFmpeg's own default starts one more; on 2 cores
        # that decoded 17% slower)
        context.thread_count = threads or _cores()
        context.thread_type = "AUTO"  # frame and slice threads, as OpenCV; the same frames as one thread
    except BaseException:
        container.close()
        raise
    return container, stream


def _frames(packets: Iterator[av.Packet], stream: av.VideoStream, stop_at_damage: bool) -> Iterator[av.VideoFrame]:
    """The frames of ``stream``'s ``packets``; a packet that does not decode raises ``_Damaged`` or is skipped."""
    context = stream.codec_context
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
                if stop_at_damage:
                    raise _Damaged() from None
            return
        if stop_at_damage and packet.is_corrupt:  # cut short (a truncated file), or flagged by the demuxer
            raise _Damaged()
        try:
            frames = packet.decode()  # the demuxer's last, empty packet drains the decoder
        except av.FFmpegError:
            if stop_at_damage:
                raise _Damaged() from None
            continue
        for frame in frames:
            if stop_at_damage and frame.is_corrupt:  # damage concealed: how depends on the threads' timing
                raise _Damaged()
            yield frame


class _NotDecoded(NamedTuple):
    """A frame that was not decoded (``PyAVCapture.decode_only``): only its presentation time is known."""

    pts: int


# Kept packets in a row that end an edit list's lead-in (its dropped packets mix with the first
# kept ones only where frames are reordered: a few B-frames).
_LEAD_IN_END = 32

# Codecs whose decoders skip non-reference frames on request (FFmpeg's skip_frame = NONREF) and
# put one frame in each packet of MP4, MKV and the like.
_SKIPPABLE_CODECS = frozenset({"h264", "hevc"})
_ORDER_LIMIT = 2_000_000  # packets; past this a file is simply decoded whole
_HELD_LIMIT = 64  # decoded frames waiting for an earlier frame's packet (H.264 reorders 16 at most)


def _presentation_order(path: Path, stream: av.VideoStream) -> np.ndarray | None:
    """The presentation times of the stream's frames, sorted, read from its packets without decoding.

    ``None`` where frames cannot be skipped safely: a codec that cannot skip, a stream without
    reordered (B-) frames, or packets without times, with repeated times or flagged corrupt.
    """
    context = stream.codec_context
    if context.name not in _SKIPPABLE_CODECS or not context.has_b_frames:
        return None
    times = array("q")
    try:
        with av.open(file_name(path)) as container:
            for packet in container.demux(container.streams[stream.index]):
                if packet.size == 0 or packet.is_discard:  # the demuxer's final empty packet; edit-list lead-in
                    continue
                if packet.pts is None or packet.is_corrupt or len(times) >= _ORDER_LIMIT:
                    return None
                times.append(packet.pts)
    except _ERRORS:
        return None
    order = np.sort(np.frombuffer(times, dtype=np.int64))
    if np.any(np.diff(order) == 0):
        return None
    return order


def _frames_decoding_only(
    packets: Iterator[av.Packet], stream: av.VideoStream, order: np.ndarray, wanted: frozenset[int]
) -> Iterator[av.VideoFrame | _NotDecoded]:
    """Every frame in presentation order, decoding only what the ``wanted`` frames need.

    A packet whose frame is not wanted goes to the decoder with skip_frame = NONREF: a frame that
    later frames are predicted from is decoded anyway, one that none is (most B-frames) is not,
    so the wanted frames decode exactly as in a full decode. ``order`` (``_presentation_order``)
    gives each packet's frame index: its rank among the packets' times, counted from the first
    frame the decoder gives (frame 0). A frame sent for skipping and never given is yielded as
    ``_NotDecoded``. Anything unexpected (a decode error, a frame FFmpeg flags as damaged, a time
    the packets do not have, a frame out of order or missing) raises ``_Damaged``: the file is then
    decoded again, whole.
    """
    context = stream.codec_context

    def rank_of(pts: int | None) -> int:
        rank = int(np.searchsorted(order, pts)) if pts is not None else len(order)
        if rank == len(order) or order[rank] != pts:
            raise _Damaged()
        return rank

    base: int | None = None  # rank of frame 0: the first frame the decoder gives
    given = 0  # ranks below this have been yielded
    sent: dict[int, bool] = {}  # rank -> sent for skipping, for ranks not yet yielded
    held: list[tuple[int, av.VideoFrame]] = []  # decoded, waiting for the packets of earlier frames

    def ready() -> Iterator[av.VideoFrame | _NotDecoded]:
        nonlocal given
        while held:
            rank, frame = held[0]
            while given < rank:
                if given not in sent:
                    return  # that frame's packet is still to come
                if not sent.pop(given):
                    raise _Damaged()  # decoded, yet never given: not the frames a full decode gives
                yield _NotDecoded(int(order[given]))
                given += 1
            sent.pop(rank, None)
            held.pop(0)
            yield frame
            given = rank + 1

    skipping = False
    try:
        for packet in packets:
            if packet.is_corrupt:
                raise _Damaged()
            skip = False
            if packet.size and not packet.is_discard:
                rank = rank_of(packet.pts)
                skip = base is not None and rank > base and rank - base not in wanted
                sent[rank] = skip
            if skip != skipping:
                context.skip_frame = "NONREF" if skip else "DEFAULT"
                skipping = skip
            for frame in packet.decode():  # the demuxer's last, empty packet drains the decoder
                if frame.is_corrupt:  # concealed damage: its pixels depend on what was decoded before
                    raise _Damaged()
                rank = rank_of(frame.pts)
                if base is None:
                    base = given = rank  # frames before it (leading frames of an open GOP) are not given by FFmpeg
                if rank < given or (held and rank <= held[-1][0]):
                    raise _Damaged()
                held.append((rank, frame))
                if len(held) > _HELD_LIMIT:
                    raise _Damaged()
                yield from ready()
    except av.FFmpegError:
        raise _Damaged() from None
    if base is None:
        return
    yield from ready()
    if held or any(not skip for rank, skip in sent.items() if rank >= given):
        raise _Damaged()
    for rank in range(given, len(order)):
        if rank not in sent:
            raise _Damaged()
        yield _NotDecoded(int(order[rank]))


def _rgb(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    """The frame as RGB at ``size`` (the stream's first), converted as decord's scale filter does."""
    width, height = size
    resized = (frame.width, frame.height) != size
    if frame.interlaced_frame or resized:
        # Two things FFmpeg's frame converter (sws_scale_frame, which PyAV 17+ calls) follows and
        # decord's FFmpeg 4.1 scale filter did not: the interlaced flag (it converts such frames
        # field by field, placing the chroma elsewhere: up to 255 apart) and, when scaling, the
        # chroma siting (0.5-1.1 of 255 apart on H.264). The same pixels in a frame without them
        # convert as decord does.
        frame = _bare_copy(frame)
    # One converter thread, as decord's: PyAV's default (one per core) took 0.67-0.82 ms per 720p
    # frame and twice the CPU, against 0.49 ms; the pixels are the same.
    if resized:
        # The picture size changed mid-stream: decord's scale filter (FFmpeg's default flags,
        # bilinear) scales every frame to the stream's first size; so do we.
        return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR", threads=1)
    if max(component.bits for component in frame.format.components) > 8:
        # High bit depth goes through swscale's general path, whose chroma filter differs between
        # decord's FFmpeg 4.1 and PyAV's: nearest-neighbour chroma is closest to decord's (4:2:2
        # 10-bit exactly; 4:2:0 10-bit 1.1 of 255 against bilinear's 2.4).
        return frame.to_ndarray(format="rgb24", interpolation="POINT", threads=1)
    # 8-bit frames take swscale's unscaled path, identical across versions whatever the flags,
    # except vertically halved chroma with an odd height (4:2:0 VP9, FFV1, MJPEG; H.264 cannot code
    # one) and 4:4:0/4:1:0, which take the general path: FFmpeg 8 interpolates their chroma unlike
    # decord's FFmpeg 4.1 whatever the flags; the default (bilinear, decord's) is the closest,
    # 1.0 of 255 on average on a VP9 320x179 against bicubic's 1.2 and nearest-neighbour's 1.1.
    return frame.to_ndarray(format="rgb24", threads=1)


def _bare_copy(frame: av.VideoFrame) -> av.VideoFrame:
    """The frame's pixels in a new frame that keeps only their colour matrix and range (any planar
    format; PyAV's array round trip does not know them all, e.g. DV's 4:1:1)."""
    copy = av.VideoFrame(frame.width, frame.height, frame.format.name)
    for source, target in zip(frame.planes, copy.planes):
        row = min(source.line_size, target.line_size)
        rows_in = np.frombuffer(source, np.uint8).reshape(source.height, source.line_size)
        rows_out = np.frombuffer(target, np.uint8).reshape(target.height, target.line_size)
        rows_out[:, :row] = rows_in[:, :row]
    copy.colorspace, copy.color_range = frame.colorspace, frame.color_range
    return copy
