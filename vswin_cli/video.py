"""Reading videos: probe a file, then stream it once keeping only the planned frames.

    info = probe("clip.mp4")                                   # frames, fps, size, rotation, ...
    video = read_video("clip.mp4", lambda info: plan_clips(info.frames, info.timestamps, info.fps, KINETICS))
    video.clip_frames(video.clips[0])                          # list of RGB uint8 (H, W, 3), upright

What we rely on, and why:

* Who decodes: PyAV, for every file it opens (pyav_capture.py: the official pipeline's decord
  converts each frame by its own format, colour tags and range and scales it to the stream's
  first size; OpenCV does none of this, and its wheels cannot decode AV1). OpenCV's capture of
  the same file, never read when PyAV decodes, describes it (container frame count, rate, codec,
  size, rotation), so a file is described and sampled the same way whichever library decodes it.
  OpenCV decodes only a file PyAV cannot open. Of several video streams, PyAV reads the one
  decord reads (``pyav_capture.official_stream``), and describes it itself if it is not the first.
* Frame counts come from decoding, never from the container alone: ``CAP_PROP_FRAME_COUNT`` is
  the container's claim (or an estimate from duration x fps) and is wrong for truncated and some
  damaged or variable-frame-rate files. ``grab()`` decodes without converting colours, so counting
  is cheaper than reading. Each pass says first which frames it will retrieve
  (``_Reader.retrieves_only``): PyAV then leaves H.264/HEVC non-reference frames outside that set
  undecoded, counting and timing them from their packets, and a damaged file is read again
  decoding every frame (``PyAVCapture.decode_only``). ``_stream`` decodes every frame: the clips it
  has yielded could not be taken back.
* One pass when the container tells the truth: ``read_video`` plans clips from the container's
  count and frame rate, decodes the file once, converts only the planned frames, then re-plans
  from what was actually decoded. If that plan needs a frame it did not keep (the container lied),
  a second sequential pass fetches the missing frames. The result is always the plan of the
  decoded frames; nothing relies on the container being right.
* No seeking: seeks land on nearby keyframes for some codecs and then return different frames
  than a sequential read; we always read sequentially from the start.
* Timestamps: ``CAP_PROP_POS_MSEC`` after each ``grab()`` is the decoded frame's presentation
  time (PyAV's frame time; OpenCV >= 4.2), so variable frame rate videos get true times. If a
  file has none or they go backwards, times fall back to ``index / fps`` with a warning.
* Rotation: frames are turned upright from the container's display matrix exactly once (PyAV:
  the frame's matrix; OpenCV >= 4.5: ``CAP_PROP_ORIENTATION_AUTO``, switched on explicitly);
  ``rotation`` reports ``CAP_PROP_ORIENTATION_META`` (degrees clockwise, the classic ``rotate``
  tag). Tests compare against ffmpeg's own auto-rotation.
* Where OpenCV decodes, its known misreadings are handled: OpenCV below 4.13 (pyproject pins
  it; later wheels return black or stale frames for interlaced video); a pixel format that
  changes mid-stream in MJPEG (trail cameras: the first frame 4:2:2, the rest 4:2:0), which OpenCV
  converts with the first frame's converter: ``_Reader`` gives each format its own capture
  (frame_formats.py finds the formats); Theora 4:2:0 with an odd height is refused.
* Nothing hangs: special files are refused before opening (reading a FIFO blocks), and decoding
  stops after ``_grab_limit`` frames, far beyond what the container announces, with a warning.
* Memory holds only the frames a plan keeps (optionally already resized through
  ``frame_transform``) plus 8 bytes of timestamp per frame (16 where frames are skipped); ``iter_clips`` releases each frame
  once no later clip needs it, for sliding windows over long videos.
"""

from __future__ import annotations

import math
import os
from array import array
import stat
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence, TypeVar

import cv2
import numpy as np

from .errors import VswinError
from .frame_formats import JPEG_CODECS, FormatRuns, jpeg_layout, theora_subsampling
from .inputs import still_image_kind
from .protocol import frame_pixels_problem
from .pyav_capture import DecodeAgain, PyAVCapture, file_name, open_pyav, stream_types, turned_degrees
from .sampling import Clip
from .verification import file_identity

# FFmpeg's own log lines (h264 errors on damaged files...) would bypass our one-line reasons;
# OpenCV reads this when it opens a capture. Users who set it themselves keep their value.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

Capture = cv2.VideoCapture | PyAVCapture  # what decodes a file: PyAV, or OpenCV where PyAV cannot

_UNKNOWN_FRAMES_LIMIT = 500_000  # grab cap when the container does not say how many frames it has
# Frames a container may claim and still be planned from before decoding (a header's count sizes
# arrays of 8 bytes a frame: a false claim of 10^9 frames would take gigabytes). A longer video
# is planned after its scan and its kept frames read in a second pass.
_GUESS_LIMIT = 1 << 22  # 39 hours at 30 fps


class VideoError(VswinError):
    """A file that cannot be read as a video: a per-file failure (exit code 1), not a usage error."""

    exit_code = 1


@dataclass(frozen=True)
class VideoInfo:
    """What decoding a file showed.

    ``frames`` is the number of frames that decode; ``container_frames`` what the container
    announces (``None`` when it does not say). ``width``/``height`` are the upright size of the
    decoded frames; ``rotation`` the degrees (clockwise) applied to make them upright.
    ``timestamps`` holds each decoded frame's time in seconds (the first frame at 0).
    """

    path: str
    frames: int
    container_frames: int | None
    fps: float
    duration: float
    width: int
    height: int
    rotation: int
    codec: str
    variable_frame_rate: bool
    timestamps: np.ndarray = field(repr=False, compare=False)
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields (timestamps left out)."""
        return {
            "path": self.path,
            "frames": self.frames,
            "container_frames": self.container_frames,
            "fps": round(self.fps, 3),
            "duration": round(self.duration, 3),
            "width": self.width,
            "height": self.height,
            "rotation": self.rotation,
            "codec": self.codec,
            "variable_frame_rate": self.variable_frame_rate,
            "warnings": list(self.warnings),
        }

    def as_record(self) -> dict[str, object]:
        """The ``video`` field of a result record (see DESIGN.md)."""
        return {
            "frames": self.frames,
            "fps": round(self.fps, 3),
            "duration": round(self.duration, 3),
            "width": self.width,
            "height": self.height,
            "rotation": self.rotation,
        }


@dataclass
class DecodedVideo:
    """A video's info, its clips and the frames they use (RGB uint8, upright, by frame index)."""

    info: VideoInfo
    clips: list[Clip]
    frames: dict[int, np.ndarray]
    warnings: list[str]

    def clip_frames(self, clip: Clip) -> list[np.ndarray]:
        return [self.frames[i] for i in clip.frames]


Plan = Callable[[VideoInfo], Sequence[Clip]]
FrameTransform = Callable[[np.ndarray], np.ndarray]


# Set when the run is interrupted (Ctrl-C, SIGTERM): decodes still running in other threads end
# at their next frame, rather than finish long files whose frames no one will take.
_stopped = threading.Event()


def stop_decoding() -> None:
    """Make every decode in this process end at its next frame, with a VideoError (the run is over)."""
    _stopped.set()


def decoding_stopped() -> bool:
    """Whether ``stop_decoding`` was called (decodes in worker processes are then not waited for)."""
    return _stopped.is_set()


def probe(path: str | os.PathLike[str], decoder_threads: int = 0) -> VideoInfo:
    """Decode the whole file once (without colour conversion) and describe it."""
    return _probe_scan(Path(path), decoder_threads).info


def _probe_scan(path: Path, decoder_threads: int, identity: tuple[int, ...] | None = None) -> _Scan:
    return _scan_file(path, check_file(path), decoder_threads, lambda capture: frozenset(), identity=identity)


def read_video(
    path: str | os.PathLike[str], plan: Plan, frame_transform: FrameTransform | None = None, decoder_threads: int = 0
) -> DecodedVideo:
    """Decode a file and keep the frames of ``plan(info)`` (RGB uint8, upright).

    ``frame_transform`` (e.g. ``transforms.short_side_resizer(protocol)``) is applied once to each
    kept frame as it is decoded. ``decoder_threads``: FFmpeg's threads for this file (0: one per
    core); the frames are the same for any count.
    """
    path = Path(path)
    identity = file_identity(path)  # each pass reads this version of the file, or none
    head = check_file(path)

    def planned(capture: Capture) -> frozenset[int]:  # the frames the container's claims plan
        guess = _container_guess(capture, path)
        return _frames_of(plan(guess)) if guess is not None else frozenset()

    scan = _scan_file(path, head, decoder_threads, planned, frame_transform, identity)
    info = scan.info
    clips = list(plan(info))
    needed = _frames_of(clips)
    frames = {index: frame for index, frame in scan.kept.items() if index in needed}
    missing = needed - frames.keys()
    if missing:
        frames.update(_fetch(path, head, missing, info.frames, frame_transform, decoder_threads, identity))
    return DecodedVideo(info=info, clips=clips, frames=frames, warnings=list(info.warnings))


def iter_clips(
    path: str | os.PathLike[str], plan: Plan, frame_transform: FrameTransform | None = None, decoder_threads: int = 0
) -> tuple[VideoInfo, list[Clip], Iterator[tuple[Clip, list[np.ndarray]]]]:
    """Probe, plan, then stream: yield each clip with its frames as soon as they are decoded.

    Two passes (count, then retrieve), and a frame is released as soon as no later clip uses it,
    so memory stays bounded by the clips that overlap, however long the video.
    """
    before = file_identity(Path(path))
    scan = _probe_scan(Path(path), decoder_threads, before)
    info = scan.info
    clips = list(plan(info))
    # A damaged file is streamed with the one thread its scan fell back to: the same frames.
    return info, clips, _stream(Path(path), info, clips, frame_transform, scan.threads, before)


def _require_same(path: Path, identity: tuple[int, ...] | None) -> None:
    """VideoError when ``path`` is no longer the file whose ``file_identity`` a video's reading began
    with (replaced by rsync, or cp then mv): its frames would go with the other one's description."""
    if identity is not None and file_identity(path) != identity:
        raise VideoError(f"{path}: the file changed while it was being read; run again to read it anew")


# --------------------------------------------------------------------------------------------
# Checks before opening


def check_file(path: Path) -> bytes:
    """Refuse what is not a readable, non-empty regular file that could be a video.

    Returns the first bytes of the file (used to explain failures later).
    """
    try:
        status = path.stat()
    except FileNotFoundError:
        raise VideoError(f"{path}: no such file") from None
    except OSError as error:
        raise VideoError(f"{path}: cannot access the file ({error.strerror or error})") from None
    if stat.S_ISDIR(status.st_mode):
        raise VideoError(f"{path}: is a directory, not a video file")
    if not stat.S_ISREG(status.st_mode):
        raise VideoError(f"{path}: not a regular file (device, pipe or socket)")
    if status.st_size == 0:
        if _reads_anything(path):  # /proc and /sys files say 0 bytes and hold text
            raise VideoError(f"{path}: not a video (a virtual file, as under /proc or /sys)")
        raise VideoError(f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path}: unreadable (permission denied)")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except PermissionError:
        raise VideoError(f"{path}: unreadable (permission denied)") from None
    except OSError as error:
        raise VideoError(f"{path}: unreadable ({error.strerror or error})") from None
    image = _image_kind(head)
    if image == "JPEG" and path.suffix.lower() in (".mjpeg", ".mjpg"):
        image = None  # a stream of JPEG pictures, as IP cameras send: a video
    if image:
        raise VideoError(f"{path}: not a video ({'an' if image[0] in 'AEIOU' else 'a'} {image} image)")
    return head


def _reads_anything(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return bool(handle.read(1))
    except OSError:
        return False


def _image_kind(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if _animated_png(head) else "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"BM") and len(head) > 14 and head[6:10] == b"\0\0\0\0":
        return "BMP"
    if head[:4] in (b"II*\0", b"MM\0*"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return still_image_kind(head)


def _animated_png(head: bytes) -> bool:
    """Whether a PNG is an animation (APNG: an ``acTL`` chunk before the first image data),
    which FFmpeg decodes frame by frame as it does a GIF."""
    offset = 8
    while offset + 8 <= len(head):
        length, kind = int.from_bytes(head[offset:offset + 4], "big"), head[offset + 4:offset + 8]
        if kind == b"acTL":
            return True
        if kind == b"IDAT":
            return False
        offset += 12 + length
    return False


def _open(path: Path, head: bytes, threads: int = 0) -> Capture:
    _quiet_opencv_warnings()
    # Several decoders at once each get a share of the cores; by default each would start one
    # FFmpeg thread per core. FFmpeg's threaded decoding gives the same frames as one thread.
    params = [cv2.CAP_PROP_N_THREADS, threads] if threads > 0 else []
    with _utf8_name(path) as name:
        capture = cv2.VideoCapture(name, cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path}: {_why_unopenable(path, head)}")
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    # PyAV decodes and converts as decord does (see pyav_capture.py); OpenCV's capture still
    # describes the file, and decodes it only if PyAV cannot.
    return open_pyav(path, capture, threads) or capture


@contextmanager
def _utf8_name(path: Path) -> Iterator[str]:
    """A name OpenCV can take for ``path`` (absolute: ``pyav_capture.file_name``).

    OpenCV takes file names as UTF-8 and crashes the process on a name that is not (bytes that
    decode to nothing, kept by Python as surrogates). Such a file is opened through a symbolic
    link with a plain name, in a private temporary folder, for as long as opening takes: FFmpeg
    holds the file itself once it is open.
    """
    name = file_name(path)
    if _opencv_finds(name):
        yield name
        return
    with tempfile.TemporaryDirectory(prefix="vswin-open-") as folder:
        link = os.path.join(folder, "video" + _plain_suffix(path))
        try:
            os.symlink(os.path.abspath(path), link)
        except OSError as error:
            raise VideoError(
                f"{path}: OpenCV cannot take its name and no link to it could be made "
                f"({error.strerror or error}); rename the file"
            ) from None
        yield link


def _opencv_finds(name: str) -> bool:
    """Whether OpenCV, which encodes the name as UTF-8, opens the file's own bytes: not when the
    name is not UTF-8 on disk, nor under a locale that is not (Latin-1 reads the bytes of "café"
    as "cafÃ©", which would be encoded anew into a name no file has)."""
    try:
        return name.encode("utf-8") == os.fsencode(name)
    except UnicodeEncodeError:
        return False


def _plain_suffix(path: Path) -> str:
    # FFmpeg guesses some formats from the extension as well as the content: keep it if plain.
    suffix = path.suffix
    return suffix if suffix.isascii() and suffix[1:].isalnum() else ""


def _quiet_opencv_warnings() -> None:
    # OpenCV logs on stderr for every file it cannot open; we explain failures ourselves.
    if "OPENCV_LOG_LEVEL" in os.environ:
        return
    logging = getattr(cv2.utils, "logging", None)  # OpenCV 5; OpenCV 4 has cv2.setLogLevel
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    elif hasattr(cv2, "setLogLevel"):
        cv2.setLogLevel(0)  # LOG_LEVEL_SILENT


_AUDIO_MAGIC = {b"ID3": "an MP3 audio file", b"fLaC": "a FLAC audio file", b"#!AMR": "an AMR audio file"}


_STREAM_NOUNS = {"subtitle": "subtitles", "attachment": "attachments"}


def _why_unopenable(path: Path, head: bytes) -> str:
    """One line on why FFmpeg could not open the file, from its first bytes and its structure."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return _why_mp4(path)
    for magic, what in _AUDIO_MAGIC.items():
        if head.startswith(magic):
            return f"no video stream ({what})"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "no video stream (a WAV audio file)"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "no video stream (an MPEG audio file)"
    container = _container_kind(head)
    if container:
        streams = stream_types(path)
        if streams is not None and "video" not in streams:  # a whole file, without pictures
            kinds = [_STREAM_NOUNS.get(kind, kind) for kind in sorted(set(streams), key=streams.index)]
            return f"no video stream (only {' and '.join(kinds)})" if kinds else "no video stream (no streams at all)"
        return f"cannot be opened as a video: a damaged, truncated or audio-only {container} file"
    if _looks_like_text(head):
        return "not a video (a text file)"
    return "not a video (unrecognised file format)"


def _container_kind(head: bytes) -> str | None:
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "Matroska/WebM"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "AVI"
    kinds = {b"OggS": "Ogg", b"FLV\x01": "FLV", b"\x30\x26\xb2\x75": "ASF/WMV", b"\x00\x00\x01\xba": "MPEG-PS"}
    return kinds.get(head[:4])


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t\f" for ch in text)


def _why_mp4(path: Path) -> str:
    """Walk the top-level ISO-BMFF boxes: a box running past the end means a truncated file."""
    size = path.stat().st_size
    boxes: list[bytes] = []
    moov: tuple[int, int] | None = None
    with open(path, "rb") as handle:
        offset = 0
        while offset + 8 <= size:
            handle.seek(offset)
            header = handle.read(16)
            length = int.from_bytes(header[:4], "big")
            kind = header[4:8]
            if length == 1 and len(header) >= 16:
                length = int.from_bytes(header[8:16], "big")
            elif length == 0:
                length = size - offset
            if length < 8:
                return "damaged MP4/MOV container (invalid box size)"
            if not all(32 <= byte < 127 for byte in kind):  # box types are printable: these bytes are no box
                return f"damaged MP4/MOV container (no box where one should start, at byte {offset:,})"
            boxes.append(kind)
            if offset + length > size:
                name = kind.decode("latin-1")
                return f"truncated: the file ends inside its '{name}' box ({size} of {offset + length} bytes)"
            if kind == b"moov":
                moov = (offset, length)
            offset += length
        if moov is None:
            return "truncated or incomplete MP4/MOV: no 'moov' index (interrupted recording or download?)"
        handlers = set(_track_handlers(handle, moov[0] + 8, moov[0] + moov[1]))
    if b"vide" not in handlers:
        return "no video stream (audio only)" if b"soun" in handlers else "no video stream"
    return "cannot be opened as a video: damaged or unsupported MP4/MOV"


def _track_handlers(handle: BinaryIO, start: int, end: int, depth: int = 0) -> Iterator[bytes]:
    """The handler types ('vide', 'soun'...) of the tracks in a 'moov' box's contents, found by
    walking trak > mdia > hdlr and seeking past everything else: the sample tables of a long
    recording (or a damaged size field) can make the box gigabytes long."""
    offset = start
    while offset + 8 <= end and depth < 3:
        handle.seek(offset)
        header = handle.read(16)
        length, kind, size_bytes = int.from_bytes(header[:4], "big"), header[4:8], 8
        if length == 1 and len(header) >= 16:
            length, size_bytes = int.from_bytes(header[8:16], "big"), 16
        elif length == 0:
            length = end - offset
        if length < size_bytes or offset + length > end:
            return
        if kind in (b"trak", b"mdia"):
            yield from _track_handlers(handle, offset + size_bytes, offset + length, depth + 1)
        elif kind == b"hdlr" and depth == 2:
            # hdlr: version/flags (4), pre_defined (4), then the handler type.
            handle.seek(offset + size_bytes + 8)
            yield handle.read(4)
        offset += length


# --------------------------------------------------------------------------------------------
# Decoding


class _Reader:
    """A file's frames in order, each converted to RGB by a converter made for its pixel format.

    ``grab``/``time_ms``/``retrieve`` as on one capture. PyAV converts each frame by its own
    format, so a PyAV capture always works alone. OpenCV converts every frame with the
    converter made for the first frame it converted (see frame_formats.py), so when the format
    changes mid-stream each format gets its own capture: the one whose converter fits retrieves,
    after decoding up to the current frame if it lags behind (no seeking). Each capture decodes a
    frame at most once, so a file with k formats costs at most k decodes; a file with one format
    (nearly all) costs nothing more than one capture.
    """

    def __init__(self, path: Path, head: bytes, threads: int = 0) -> None:
        self.path, self.head, self.threads = path, head, threads
        self.capture = _open(path, head, threads)  # the leading capture: every grab goes through it
        self.position = -1  # the frame it is on
        self._first: tuple[int, float] | None = None  # the first frame converted (index, time)
        self._layout: bytes | None = None  # the format the leading capture's converter was made for
        self._others: list[tuple[Capture, int, bytes]] = []  # (capture, frame it is on, its format)
        self._runs: FormatRuns | None = None
        self._runs_known = False

    def grab(self) -> bool:
        if _stopped.is_set():
            raise VideoError(f"{self.path}: decoding was interrupted")
        if not self.capture.grab():
            return False
        self.position += 1
        return True

    def time_ms(self) -> float:
        return self.capture.get(cv2.CAP_PROP_POS_MSEC)

    def decode_again_when_damaged(self) -> None:
        """See ``PyAVCapture.decode_again_when_damaged``; call before the first ``grab``."""
        if isinstance(self.capture, PyAVCapture):
            self.capture.decode_again_when_damaged()

    def retrieves_only(self, indices: frozenset[int]) -> None:
        """Say, before the first ``grab``, which frames will be retrieved: PyAV then leaves the
        others undecoded where no retrieved frame needs them (``PyAVCapture.decode_only``)."""
        if isinstance(self.capture, PyAVCapture):
            self.capture.decode_only(indices)

    def retrieve(self, transform: FrameTransform | None) -> np.ndarray:
        index = self.position
        if self._first is None:
            # The first conversion is always right; formats are looked up only if another follows
            # (so probing, which converts frame 0 alone, never reads the packets).
            self._first = (index, self.time_ms())
        else:
            runs = self._format_runs()
            if runs is not None:
                if self._layout is None:
                    self._layout = runs.layout_of(*self._first)
                wanted = runs.layout_of(index, self.time_ms())
                if wanted != self._layout:
                    self._lead_with(wanted, index)
        return _retrieve(self.capture, self.path, index, transform)

    def release(self) -> None:
        self.capture.release()
        for capture, _, _ in self._others:
            capture.release()
        self._others.clear()

    def _format_runs(self) -> FormatRuns | None:
        if not self._runs_known:
            # PyAV's converter follows each frame's own format; only OpenCV's needs runs.
            if not isinstance(self.capture, PyAVCapture):
                self._runs = _format_runs(self.path, _codec(self.capture), _grab_limit(_container_frames(self.capture)))
            self._runs_known = True
        return self._runs

    def _lead_with(self, layout: bytes, index: int) -> None:
        """Make the capture whose converter fits ``layout`` (a new one if none) lead, on frame ``index``."""
        for slot, (capture, at, kind) in enumerate(self._others):
            if kind == layout:
                del self._others[slot]
                break
        else:
            capture, at = _open(self.path, self.head, self.threads), -1
        while at < index:
            if not capture.grab():
                capture.release()
                raise VideoError(f"{self.path}: decoding is not repeatable (frame {index} was not reached again)")
            at += 1
        assert self._layout is not None
        self._others.append((self.capture, self.position, self._layout))
        self.capture, self._layout = capture, layout


def _format_runs(path: Path, codec: str, limit: int) -> FormatRuns | None:
    """Where the pixel format changes, from the packets' headers (JPEG streams only); ``None`` if never."""
    if codec not in JPEG_CODECS:
        return None
    with _packet_capture(path) as capture:
        return FormatRuns.of_packets(_packet_layouts(capture, limit)) if capture is not None else None


@contextmanager
def _packet_capture(path: Path) -> Iterator[cv2.VideoCapture | None]:
    """A capture that reads the stream's packets as they are, without decoding (``CAP_PROP_FORMAT``
    -1), and gives the codec's extradata; ``None`` if OpenCV cannot."""
    with _utf8_name(path) as name:
        capture = cv2.VideoCapture(name, cv2.CAP_FFMPEG)
    try:
        yield capture if capture.isOpened() and capture.set(cv2.CAP_PROP_FORMAT, -1) else None
    finally:
        capture.release()


def _packet_layouts(capture: cv2.VideoCapture, limit: int) -> Iterator[tuple[float, bytes | None]]:
    for _ in range(limit):
        ok, packet = capture.read()
        if not ok or packet is None:
            return
        yield capture.get(cv2.CAP_PROP_POS_MSEC), jpeg_layout(packet.tobytes())


@dataclass
class _Scan:
    info: VideoInfo
    kept: dict[int, np.ndarray]
    threads: int = 0  # the decoder threads that gave these frames (1 after damage: see _decoding_only)


def _container_frames(capture: Capture) -> int | None:
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    if not math.isfinite(count) or count < 1 or count > 1e9:
        return None
    return int(count)


def _count_is_estimate(capture: Capture, head: bytes) -> bool:
    """Whether the container's frame count is only an estimate (from its duration and frame rate):
    the stream states no count. Matroska and WebM never do; neither do MPEG-TS, FLV and raw streams,
    which only PyAV tells apart."""
    if isinstance(capture, PyAVCapture):
        return not capture.count_stated
    return head[:4] == b"\x1a\x45\xdf\xa3"


def _container_fps(capture: Capture) -> float | None:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if math.isfinite(fps) and 0 < fps < 10_000 else None


def _codec(capture: Capture) -> str:
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    if code <= 0:  # no four letters (raw video): FFmpeg's name, where PyAV reads the file
        return capture.codec_name if isinstance(capture, PyAVCapture) else "unknown"
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text.strip() if text.isprintable() and text.strip() else f"0x{code:08x}"


def _rotation(capture: Capture) -> int:
    # Degrees clockwise; frames are turned by quarter turns only (OpenCV and PyAVCapture alike):
    # another angle, or a matrix that is no rotation (OpenCV reports INT_MIN), leaves them as coded.
    return turned_degrees(-capture.get(cv2.CAP_PROP_ORIENTATION_META))


def _container_guess(capture: Capture, path: Path) -> VideoInfo | None:
    """What the container claims, to plan a first pass (verified against the decode after)."""
    frames, fps = _container_frames(capture), _container_fps(capture)
    if frames is None or fps is None or frames > _GUESS_LIMIT:
        return None
    if isinstance(capture, PyAVCapture) and capture.count_stated:
        # The frames an edit list drops at the start are in the count; planned on it, every
        # sampled frame of a cut made without re-encoding would be fetched by a second pass.
        frames = max(1, frames - capture.leading_discards())
    elif isinstance(capture, PyAVCapture):  # an estimate from a duration that may include a lead-in
        frames = max(1, frames - round(capture.lead_in_seconds * fps))
    return VideoInfo(
        path=str(path), frames=frames, container_frames=frames, fps=fps, duration=frames / fps,
        width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        rotation=_rotation(capture), codec=_codec(capture), variable_frame_rate=False,
        timestamps=np.arange(frames, dtype=np.float64) / fps,
    )


def _grab_limit(container_frames: int | None) -> int:
    """How many frames to decode at most: decoders that loop forever must not hang a batch."""
    if container_frames is None:
        return _UNKNOWN_FRAMES_LIMIT
    return 2 * container_frames + 1000


def _retrieve(capture: Capture, path: Path, index: int, transform: FrameTransform | None) -> np.ndarray:
    if isinstance(capture, PyAVCapture):
        rgb = capture.retrieve_rgb()
    else:
        ok, frame = capture.retrieve()
        rgb = _opencv_rgb(frame) if ok and frame is not None else None
    if rgb is None:
        raise VideoError(f"{path}: frame {index} decoded but could not be converted to RGB")
    return transform(rgb) if transform is not None else rgb


def _opencv_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8:  # OpenCV converts to 8-bit BGR by default; be safe anyway
        frame = cv2.convertScaleAbs(frame, alpha=255.0 / 65535.0) if frame.dtype == np.uint16 else frame.astype(np.uint8)
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _scan_file(
    path: Path, head: bytes, threads: int, keep: Callable[[Capture], frozenset[int]], transform: FrameTransform | None = None,
    identity: tuple[int, ...] | None = None,
) -> _Scan:
    """``_scan`` of the file, keeping ``keep(capture)`` (see ``_decoding_only``)."""
    return _decoding_only(path, head, threads, keep, lambda reader, wanted: _scan(reader, path, head, wanted, transform),
                          identity)


_Pass = TypeVar("_Pass")


def _decoding_only(
    path: Path, head: bytes, threads: int, retrieved: Callable[[Capture], frozenset[int]],
    read: Callable[[_Reader, frozenset[int]], _Pass], identity: tuple[int, ...] | None = None,
) -> _Pass:
    """``read(reader, retrieved(capture))`` on a fresh reader that decodes only the frames the
    retrieved ones need (``_Reader.retrieves_only``); a file found damaged on the way is read
    again from its start, decoding every frame with one thread: the frames FFmpeg conceals
    damage with then do not depend on threads' timing, run after run.

    ``identity`` (``file_identity`` when the video's reading began): a file replaced since (rsync,
    cp then mv) is refused, not read as the same video."""
    for every_frame in (False, True):
        reader = _Reader(path, head, 1 if every_frame else threads)
        try:
            _require_same(path, identity)
            wanted = retrieved(reader.capture)
            if not every_frame:
                reader.retrieves_only(wanted)
                reader.decode_again_when_damaged()
            return read(reader, wanted)
        except DecodeAgain:
            continue
        finally:
            reader.release()
    raise AssertionError("a pass that decodes every frame does not ask to decode again")


def _scan(
    reader: _Reader,
    path: Path,
    head: bytes,
    keep: frozenset[int],
    transform: FrameTransform | None = None,
) -> _Scan:
    """Grab every frame, note its time, retrieve frame 0 (for the upright size) and ``keep``."""
    capture = reader.capture
    if not isinstance(capture, PyAVCapture):
        _refuse_known_miscoding(capture, path)
    _refuse_oversized(path, *_stated_size(capture))
    container_frames = _container_frames(capture)
    estimated = container_frames is not None and _count_is_estimate(capture, head)
    limit = _grab_limit(None if estimated else container_frames)
    times = array("d")  # 8 bytes per frame: the only thing that grows with the video's length
    kept: dict[int, np.ndarray] = {}
    shape: tuple[int, int] | None = None
    warnings: list[str] = []
    while len(times) < limit and reader.grab():
        index = len(times)
        times.append(reader.time_ms() / 1000.0)
        if index == 0 or index in keep:
            if index == 0 and isinstance(capture, PyAVCapture) and capture.frame_size is not None:
                _refuse_oversized(path, *capture.frame_size)  # frames larger than the stream said
            frame = reader.retrieve(None)
            shape = frame.shape[:2]
            if index in keep:
                kept[index] = transform(frame) if transform is not None else frame
    count = len(times)
    if count == 0:
        raise VideoError(f"{path}: {_why_no_frames(path, head, _codec(capture), isinstance(capture, PyAVCapture))}")
    fps = container_fps = _container_fps(capture)
    if count == 1 and fps is None:
        # FFmpeg shows the cover art of an audio file (MP3, M4A, FLAC...) as a video stream of
        # one picture on a 90 kHz clock; OpenCV opens it like any video. One picture without a
        # frame rate is not a video to classify.
        raise VideoError(f"{path}: no video stream (only a still picture, such as an audio file's cover art)")
    if count >= limit:
        warnings.append(f"stopped decoding after {count} frames, far more than the container announced; the rest is ignored")
    # An edit list's dropped frames are in the container's count, yet no decoder gives them.
    dropped = capture.discarded_packets if isinstance(capture, PyAVCapture) else 0
    if container_frames is not None and not estimated:  # an estimate holds no count: the frames' times are checked below
        if count < container_frames - dropped:
            why = (f"{container_frames} less the {dropped} its edit list drops; the file may be truncated or damaged" if dropped
                   else "the file may be truncated or damaged; some containers only estimate the count")
            warnings.append(f"decoded {count} of {container_frames - dropped} frames the container announced ({why})")
        elif count > container_frames:
            warnings.append(f"decoded {count} frames, the container announced {container_frames}")
    if isinstance(capture, PyAVCapture):
        if capture.other_sizes:
            sizes = ", ".join(f"{width}x{height}" for width, height in capture.other_sizes)
            warnings.append(f"the picture size changes mid-stream (also {sizes}); every frame is scaled to the first "
                            "size, as the official pipeline's decoder does")
        if capture.chosen_stream is not None:
            index, streams, width, height = capture.chosen_stream
            warnings.append(f"the file has {streams} video streams; read stream #{index} ({width}x{height}), the one "
                            "the official pipeline's decoder reads")

    timestamps, variable, note = _clean_timestamps(times, fps)
    if note:
        warnings.append(note)
    if fps is None:
        span = timestamps[-1] - timestamps[0]
        fps = (count - 1) / span if count > 1 and span > 0 else 25.0
        if not (count > 1 and span > 0):
            warnings.append("no frame rate in the file; assuming 25 fps")
            timestamps = np.arange(count, dtype=np.float64) / fps
    if estimated and container_fps is not None:
        # OpenCV's estimate is the container's duration x its frame rate: what the frames must span
        # (after the lead-in a Matroska duration includes).
        lead_in = capture.lead_in_seconds if isinstance(capture, PyAVCapture) else 0.0
        announced, end = container_frames / container_fps, float(lead_in + timestamps[-1] + 1.0 / fps)
        if end < announced - max(0.5, 2.0 / fps):
            warnings.append(f"the frames end at {end:.2f} s of the {announced:.2f} s the container announced "
                            "(the file may be truncated or damaged)")
    assert shape is not None
    info = VideoInfo(
        path=str(path), frames=count, container_frames=None if estimated else container_frames, fps=float(fps),
        duration=float(timestamps[-1] + 1.0 / fps), width=int(shape[1]), height=int(shape[0]),
        rotation=_rotation(capture), codec=_codec(capture), variable_frame_rate=variable,
        timestamps=timestamps, warnings=tuple(warnings),
    )
    return _Scan(info=info, kept=kept, threads=reader.threads)


def _stated_size(capture: Capture) -> tuple[int, int]:
    """(width, height) the container states for the stream (0 where it states none)."""
    def whole(value: float) -> int:
        return int(value) if math.isfinite(value) and value > 0 else 0

    return whole(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), whole(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))


def _refuse_oversized(path: Path, width: int, height: int) -> None:
    """Refuse frames too large to decode within bounded memory, before the first is converted."""
    problem = frame_pixels_problem(width, height)
    if problem is not None:
        raise VideoError(f"{path}: {problem}")


def _refuse_known_miscoding(capture: Capture, path: Path) -> None:
    """Refuse the files this OpenCV decodes into wrong pixels while reporting success."""
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if _codec(capture) == "theo" and height % 2 and _theora_subsampling(path) in ("4:2:0", None):
        # Theora codes whole 16-pixel blocks; OpenCV hands FFmpeg's converter the coded size with
        # the picture's odd height, which it refuses for 4:2:0 ("slice parameters invalid"): the
        # frames come back stale or black.
        raise VideoError(f"{path}: Theora video with an odd height ({width}x{height}), which this OpenCV "
                         "decodes into wrong frames; convert it first, e.g. ffmpeg -i IN -c:v libx264 -vf crop=iw:ih-1 OUT.mp4")


def _theora_subsampling(path: Path) -> str | None:
    with _packet_capture(path) as capture:
        if capture is None:
            return None
        ok, extradata = capture.retrieve(None, int(capture.get(cv2.CAP_PROP_CODEC_EXTRADATA_INDEX)))
        return theora_subsampling(extradata.tobytes()) if ok and extradata is not None else None


def _clean_timestamps(times: Sequence[float], fps: float | None) -> tuple[np.ndarray, bool, str | None]:
    """Times relative to the first frame; ``index / fps`` when missing or out of order."""
    stamps = np.array(times, dtype=np.float64)
    if len(stamps) < 2:  # one frame is at 0, whatever its stamp says (a raw stream's is NaN)
        return np.zeros(len(stamps)), False, None
    steps = np.diff(stamps)
    if not np.all(np.isfinite(stamps)) or np.any(steps <= 0):
        rate = fps or 25.0
        return (np.arange(len(stamps), dtype=np.float64) / rate, False,
                f"frame timestamps are missing or out of order; times assume {rate:g} fps")
    stamps -= stamps[0]
    typical = float(np.median(steps))
    variable = bool(np.any(steps > 1.5 * typical) or np.any(steps < 0.5 * typical))
    return stamps, variable, None


def _why_no_frames(path: Path, head: bytes, codec: str, pyav: bool) -> str:
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        reason = _why_mp4(path)
        if reason.startswith("truncated"):
            return f"no decodable frames ({reason})"
    if pyav:
        return f"no decodable frames (codec {codec}): a damaged file"
    return f"no decodable frames (codec {codec}): a damaged file, or a codec neither PyAV nor this OpenCV build can decode"


def _frames_of(clips: Sequence[Clip]) -> frozenset[int]:
    return frozenset(index for clip in clips for index in clip.frames)


def _fetch(
    path: Path, head: bytes, wanted: set[int] | frozenset[int], count: int, transform: FrameTransform | None,
    threads: int = 0, identity: tuple[int, ...] | None = None,
) -> dict[int, np.ndarray]:
    """Second sequential pass: retrieve the ``wanted`` frames (no seeking, see the module doc)."""
    last = max(wanted)

    def read(reader: _Reader, wanted: frozenset[int]) -> tuple[dict[int, np.ndarray], int]:
        frames: dict[int, np.ndarray] = {}
        index = 0
        while index <= last and reader.grab():
            if index in wanted:
                frames[index] = reader.retrieve(transform)
            index += 1
        return frames, index

    frames, index = _decoding_only(path, head, threads, lambda capture: frozenset(wanted), read, identity)
    if len(frames) != len(wanted):
        raise VideoError(f"{path}: decoding is not repeatable ({count} frames on the first pass, {index} on the second)")
    return frames


def _stream(
    path: Path, info: VideoInfo, clips: list[Clip], transform: FrameTransform | None, threads: int = 0,
    identity: tuple[int, ...] | None = None,
) -> Iterator[tuple[Clip, list[np.ndarray]]]:
    # The last clip (in yield order) that needs each frame: after it, the frame can go.
    last_use: dict[int, int] = {}
    for position, clip in enumerate(clips):
        for index in clip.frames:
            last_use[index] = position
    # Clips are yielded in plan order, each once the last frame it needs (and every earlier
    # clip's) has been decoded.
    ready_at: list[int] = []
    for clip in clips:
        ready_at.append(max([max(clip.frames), *ready_at[-1:]]))
    # Every frame is decoded here: clips already yielded could not be taken back if the file
    # turned out damaged (PyAVCapture.decode_only).
    reader = _Reader(path, check_file(path), threads)
    held: dict[int, np.ndarray] = {}
    next_clip = 0
    try:
        _require_same(path, identity)
        index = 0
        while next_clip < len(clips) and reader.grab():
            if index in last_use:
                held[index] = reader.retrieve(transform)
            while next_clip < len(clips) and ready_at[next_clip] <= index:
                clip = clips[next_clip]
                frames = [held[i] for i in clip.frames]
                for i in set(clip.frames):
                    if last_use[i] == next_clip:
                        del held[i]
                next_clip += 1
                yield clip, frames
            index += 1
    finally:
        reader.release()
    if next_clip < len(clips):
        raise VideoError(f"{path}: decoding is not repeatable ({info.frames} frames on the first pass, {index} on the second)")
