"""Where a video stream's pixel format changes, read from its packets' headers without decoding.

OpenCV's FFmpeg reader (up to at least 4.14; opencv/opencv#29699) makes its colour converter for
the first frame it converts and keeps it while the frame size stays the same. A stream whose pixel
format changes mid-way is then converted with the wrong chroma layout: colour garbage, read past
the end of the frame's planes, reported as success. Trail cameras (Bushnell) write MJPEG AVI files
whose first frame is 4:2:2 and every later one 4:2:0. Where OpenCV decodes (a file PyAV cannot
open; PyAV converts each frame by its own format), ``video.py`` gives each format its own
capture; this module tells it which frames have which format.

Only JPEG-coded streams (MJPEG) are checked: their every packet is a whole picture with a plain
frame header. A format change inside an H.264 or HEVC stream (a new sequence parameter set) is
not detected, so such a file is read right only through PyAV.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Iterable

# Codec tags of streams whose packets are JPEG pictures.
JPEG_CODECS = frozenset({"MJPG", "mjpg", "jpeg", "JPEG", "AVRn", "AVDJ", "mjpa", "MJPA", "dmb1", "LJPG", "MJLS"})

# Frame header markers (SOF0-SOF15 less DHT, JPG and DAC, which share the range).
_FRAME_HEADERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_START_OF_SCAN = 0xDA
_ADOBE = 0xEE

# Frame times closer than this (microseconds) are the same frame: the reader and the packet scan
# compute them from the same timestamps, so only float rounding separates them.
_SAME_TIME_US = 50


def jpeg_layout(picture: bytes) -> bytes | None:
    """What in a JPEG picture's headers decides FFmpeg's pixel format, as bytes to compare.

    The frame header's coding process, sample precision, component ids and sampling factors, and an
    Adobe colour transform when present. ``None`` when ``picture`` is not a JPEG with a frame header.
    """
    if not picture.startswith(b"\xff\xd8"):
        return None
    transform = b""
    position = 2
    while position + 4 <= len(picture):
        if picture[position] != 0xFF:
            return None
        marker = picture[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        length = int.from_bytes(picture[position + 2:position + 4], "big")
        segment = picture[position + 4:position + 2 + length]
        if marker in _FRAME_HEADERS:
            if len(segment) < 6:
                return None
            components = segment[5]
            specs = segment[6:6 + 3 * components]
            ids_and_factors = bytes(b for i, b in enumerate(specs) if i % 3 != 2)  # not the quantiser table
            return transform + bytes([marker, segment[0], components]) + ids_and_factors
        if marker == _ADOBE and segment.startswith(b"Adobe") and len(segment) >= 12:
            transform = b"A" + segment[11:12]
        if marker == _START_OF_SCAN or length < 2:
            return None
        position += 2 + length
    return None


@dataclass(frozen=True)
class FormatRuns:
    """Runs of frames with one pixel format: where each starts (a time in microseconds, or a
    frame index when the packets' times do not increase) and its layout."""

    starts: tuple[int, ...]
    layouts: tuple[bytes, ...]
    by_time: bool

    @classmethod
    def of_packets(cls, packets: Iterable[tuple[float, bytes | None]]) -> FormatRuns | None:
        """Runs from each packet's (time, layout), in stream order; ``None`` if the format never changes.

        Holds only the runs, however long the stream. A packet without a readable header (damaged)
        is taken to continue the run before it: it will not decode anyway, and every break would
        cost the reader another capture.
        """
        runs: list[tuple[int, int, bytes]] = []  # (packet index, time in microseconds, layout)
        increasing = True
        previous: int | None = None
        for index, (time_ms, layout) in enumerate(packets):
            stamp = round(time_ms * 1000) if math.isfinite(time_ms) else None
            if stamp is None or (previous is not None and stamp - previous <= _SAME_TIME_US):
                increasing = False
            previous = stamp
            if layout is not None and (not runs or runs[-1][2] != layout):
                runs.append((index, stamp or 0, layout))
        if len({layout for _, _, layout in runs}) <= 1:
            return None
        starts = tuple(stamp if increasing else index for index, stamp, _ in runs)
        return cls(starts, tuple(layout for _, _, layout in runs), by_time=increasing)

    def layout_of(self, index: int, time_ms: float) -> bytes:
        """The layout of decoded frame ``index`` shown at ``time_ms``."""
        key = round(time_ms * 1000) + _SAME_TIME_US if self.by_time else index
        run = bisect.bisect_right(self.starts, key) - 1
        return self.layouts[max(run, 0)]


def theora_subsampling(extradata: bytes) -> str | None:
    """The chroma subsampling a Theora stream's identification header declares ("4:2:0", "4:2:2",
    "4:4:4"), from FFmpeg's extradata (the three Theora headers); ``None`` if it has none."""
    start = extradata.find(b"\x80theora")
    header = extradata[start:start + 42] if start >= 0 else b""
    if len(header) < 42:
        return None
    pixel_format = (int.from_bytes(header[40:42], "big") >> 3) & 3  # the PF field, after QUAL and KFGSHIFT
    return {0: "4:2:0", 2: "4:2:2", 3: "4:4:4"}.get(pixel_format)
