"""Finding where a stream's pixel format changes, from JPEG headers (see vswin_cli/frame_formats.py).
The pictures are encoded by OpenCV's own JPEG writer with chosen chroma subsampling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vswin_cli.frame_formats import FormatRuns, jpeg_layout, theora_subsampling

PICTURE = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)


def jpeg(sampling: int, *, quality: int = 90, picture: np.ndarray = PICTURE) -> bytes:
    ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling])
    assert ok
    return data.tobytes()


S420, S422, S444 = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444


def test_layout_tells_chroma_subsampling_apart_and_nothing_else():
    layouts = {jpeg_layout(jpeg(s)) for s in (S420, S422, S444)}
    assert len(layouts) == 3 and None not in layouts
    # Quality and content change the picture, not its pixel format.
    other = np.zeros_like(PICTURE)
    assert jpeg_layout(jpeg(S420, quality=40, picture=other)) == jpeg_layout(jpeg(S420))
    grey = cv2.imencode(".jpg", PICTURE[..., 0])[1].tobytes()
    assert jpeg_layout(grey) not in layouts


def test_what_is_not_a_jpeg_has_no_layout():
    picture = jpeg(S420)
    start_of_scan = picture.index(b"\xff\xda")
    frame_header = picture.index(b"\xff\xc0")
    for data in (b"", b"\x00\x00\x01\x67", picture[:frame_header], b"\xff\xd8\xff\xda\x00\x02" + picture[start_of_scan:], picture[:frame_header + 6]):
        assert jpeg_layout(data) is None, data[:16]


def test_runs_follow_the_packets_times():
    a, b = jpeg_layout(jpeg(S422)), jpeg_layout(jpeg(S420))
    runs = FormatRuns.of_packets([(0.0, a), (40.0, b), (80.0, b), (120.0, a), (160.0, a)])
    assert runs is not None and runs.by_time
    # Times as the decoding capture reports them (float noise is the same frame); indices do not matter.
    times = (0.0, 39.9, 39.99999, 40.0, 80.0, 119.9, 120.00001, 160.0, 500.0)
    assert [runs.layout_of(99, t) for t in times] == [a, a, b, b, b, b, a, a, a]


def test_one_format_or_only_damaged_packets_between_is_no_change():
    a, b = jpeg_layout(jpeg(S422)), jpeg_layout(jpeg(S420))
    assert FormatRuns.of_packets([(0.0, a), (40.0, a)]) is None
    assert FormatRuns.of_packets([(0.0, a), (40.0, None), (80.0, a)]) is None
    assert FormatRuns.of_packets([]) is None
    runs = FormatRuns.of_packets([(0.0, a), (40.0, None), (80.0, b)])
    assert runs is not None and [runs.layout_of(0, t) for t in (0.0, 40.0, 80.0)] == [a, a, b]


@pytest.mark.parametrize("times", [[0.0, 0.0, 0.0, 0.0], [0.0, float("nan"), 80.0, 120.0], [40.0, 0.0, 80.0, 120.0]])
def test_runs_fall_back_to_frame_order_without_increasing_times(times):
    a, b = jpeg_layout(jpeg(S422)), jpeg_layout(jpeg(S420))
    runs = FormatRuns.of_packets(zip(times, [a, a, b, b]))
    assert runs is not None and not runs.by_time
    assert [runs.layout_of(i, 0.0) for i in range(5)] == [a, a, b, b, b]


def test_theora_subsampling_from_the_identification_header():
    def header(pixel_format: int) -> bytes:
        fields = bytearray(42)
        fields[0:7] = b"\x80theora"
        fields[40:42] = ((40 << 10) | (6 << 5) | (pixel_format << 3)).to_bytes(2, "big")  # QUAL, KFGSHIFT, PF
        return b"\x00\x2a" + bytes(fields) + b"\x81theora comments"  # as FFmpeg's extradata laces them

    assert [theora_subsampling(header(pf)) for pf in (0, 2, 3)] == ["4:2:0", "4:2:2", "4:4:4"]
    assert theora_subsampling(header(1)) is None  # reserved
    assert theora_subsampling(b"") is None and theora_subsampling(header(0)[:30]) is None
