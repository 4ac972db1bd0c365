"""Resize / crops / normalisation against the official pipeline, run by
tests/reference/make_pipeline_reference.py (official Resize, ThreeCrop, CenterCrop, Normalize,
FormatShape with mmcv 1.7.2) on tests/reference/pipeline.avi decoded by a plain cv2 read."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vswin_cli.protocol import KINETICS, STHV2, TORCHVISION, Protocol
from vswin_cli.sampling import plan_clips
from vswin_cli.transforms import (
    center_crop_box,
    preprocess_clip,
    resize_short_side,
    resized_size,
    short_side_resizer,
    three_crop_boxes,
)
from vswin_cli.video import read_video

HERE = Path(__file__).parent / "reference"
REFERENCE = json.loads((HERE / "sampling.json").read_text())
PIPELINE = np.load(HERE / "pipeline.npz")
VIDEO = HERE / "pipeline.avi"


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(VIDEO), cv2.CAP_FFMPEG)
    out = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        out.append(np.ascontiguousarray(frame[:, :, ::-1]))
    assert len(out) == int(PIPELINE["num_frames"])
    return out


def _protocol(case: dict) -> Protocol:
    return Protocol(
        sampling="uniform" if case.get("uniform") else "clips", clip_len=case["clip_len"],
        frame_interval=case["frame_interval"], num_clips=case["num_clips"],
        num_crops=3 if case["three"] else 1, short_side=case["short"], crop_size=case["crop"],
    )


def _ours_official_order(frames: list[np.ndarray], protocol: Protocol) -> np.ndarray:
    """Our clips stacked as the official FormatShape does: crop-major, then clip."""
    clips = plan_clips(len(frames), None, 25.0, protocol)
    per_clip = [preprocess_clip([frames[i] for i in clip.frames], protocol) for clip in clips]
    stacked = torch.stack(per_clip, dim=1)  # (crops, clips, 3, T, h, w)
    return stacked.reshape(-1, *stacked.shape[2:]).numpy()


def _check_fingerprint(per_clip: list[torch.Tensor], name: str) -> None:
    """Compare with the official tensor's per-(view, channel, frame) means and sampled values
    without stacking the views (the full Kinetics tensor is 231 MB). View = crop * clips + clip."""
    num_clips = len(per_clip)
    shape = PIPELINE[f"{name}/shape"].tolist()
    assert [per_clip[0].shape[0] * num_clips, *per_clip[0].shape[1:]] == shape
    means = np.stack([per_clip[view % num_clips][view // num_clips].double().mean(dim=(2, 3)).numpy()
                      for view in range(shape[0])])
    np.testing.assert_allclose(means, PIPELINE[f"{name}/means"], rtol=0, atol=1e-5)
    values = np.array([per_clip[v % num_clips][v // num_clips, c, t, y, x].item()
                       for v, c, t, y, x in PIPELINE[f"{name}/positions"].astype(np.int64)])
    np.testing.assert_allclose(values, PIPELINE[f"{name}/values"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("entry", REFERENCE["resize"], ids=lambda e: f"{e['width']}x{e['height']}->{e['short']}")
def test_resized_size_equals_mmcv_rescale_size(entry):
    assert resized_size(entry["height"], entry["width"], entry["short"]) == (entry["out_height"], entry["out_width"])


@pytest.mark.parametrize("entry", REFERENCE["three_crop"], ids=lambda e: f"{e['height']}x{e['width']}")
def test_three_crop_boxes_equal_official(entry):
    assert [list(box) for box in three_crop_boxes(entry["height"], entry["width"], 224)] == entry["boxes"]


@pytest.mark.parametrize("entry", REFERENCE["center_crop"], ids=lambda e: f"{e['height']}x{e['width']}")
def test_center_crop_box_equals_official(entry):
    assert list(center_crop_box(entry["height"], entry["width"], 224)) == entry["box"]


def test_odd_margin_three_crop_stops_one_pixel_short():
    boxes = three_crop_boxes(224, 299, 224)  # margin 75: step 37
    assert boxes == [(0, 0, 224, 224), (74, 0, 298, 224), (37, 0, 261, 224)]


def test_resize_to_the_same_size_is_the_identity():
    # resize_short_side skips frames already at the target size (resize once per frame); that is
    # only equivalent to the official pipeline if cv2.resize to the same size changes nothing.
    image = np.random.default_rng(0).integers(0, 256, (224, 299, 3), dtype=np.uint8)
    assert np.array_equal(cv2.resize(image, (299, 224), interpolation=cv2.INTER_LINEAR), image)
    assert resize_short_side(image, 224) is image


@pytest.mark.parametrize("name", ["small_three", "small_center"])
def test_preprocessed_tensor_equals_official_pipeline(frames, name):
    protocol = _protocol(json.loads(str(PIPELINE[f"{name}/case"])))
    expected = PIPELINE[f"{name}/tensor"]
    ours = _ours_official_order(frames, protocol)
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name, protocol", [("kinetics", KINETICS), ("torchvision", TORCHVISION), ("sthv2", STHV2)])
def test_real_protocols_match_official_fingerprints(frames, name, protocol):
    reference = _protocol(json.loads(str(PIPELINE[f"{name}/case"])))
    # The named protocol's transforms are the ones the reference ran (its clip count may differ).
    assert (reference.short_side, reference.crop_size, reference.num_crops) == (
        protocol.short_side, protocol.crop_size, protocol.num_crops)
    protocol = reference
    clips = plan_clips(len(frames), None, 25.0, protocol)
    _check_fingerprint([preprocess_clip([frames[i] for i in clip.frames], protocol) for clip in clips], name)


def test_reader_with_resize_once_gives_the_same_tensor(frames):
    """The engine path: frames resized as they are decoded, then cropped and normalised."""
    protocol = KINETICS
    decoded = read_video(
        VIDEO, lambda info: plan_clips(info.frames, info.timestamps, info.fps, protocol),
        frame_transform=short_side_resizer(protocol),
    )
    assert all(frame.shape == (224, 299, 3) for frame in decoded.frames.values())
    _check_fingerprint([preprocess_clip(decoded.clip_frames(clip), protocol) for clip in decoded.clips], "kinetics")


def test_output_layout_and_errors():
    frame = np.zeros((72, 96, 3), np.uint8)
    frame[:, :, 0] = 255
    out = preprocess_clip([frame] * 4, KINETICS)
    assert out.shape == (3, 3, 4, 224, 224) and out.dtype == torch.float32
    # red channel: (255 - 123.675) / 58.395; green: (0 - 116.28) / 57.12
    assert out[0, 0, 0, 0, 0].item() == pytest.approx((255 - 123.675) / 58.395, abs=1e-5)
    assert out[0, 1, 0, 0, 0].item() == pytest.approx(-116.28 / 57.12, abs=1e-5)
    with pytest.raises(ValueError):
        preprocess_clip([frame.astype(np.float32)], KINETICS)
    with pytest.raises(ValueError):
        preprocess_clip([], KINETICS)


def test_slivers_fail_alone_and_elongated_frames_within_16_to_1_still_classify(tmp_path, tiny_checkpoint, invoke):
    # A 640x16 sliver (40:1): its short side scaled to 224 would make rows of 8,960 pixels, and a
    # 2x4000 one rows of 448,000 (gigabytes for a clip). It fails as one video, the batch goes on.
    import media  # tests/media.py

    media.encode_cv2(tmp_path / "sliver.avi", frames=20, size=(640, 16))
    media.encode_cv2(tmp_path / "wide.avi", frames=20, size=(256, 16))  # 16:1 exactly
    media.encode_cv2(tmp_path / "tall.avi", frames=20, size=(16, 400))  # 25:1 standing up
    code, out, err = invoke("classify", tmp_path, "-m", tiny_checkpoint, "--clips", "1", "--crops", "3",
                            "--clip-len", "4", "--format", "json")
    assert code == 1, err
    records = {Path(r["path"]).name: r for r in json.loads(out)}
    assert records["wide.avi"]["status"] == "ok" and records["wide.avi"]["predictions"]
    for name, size in (("sliver.avi", "640x16 (40:1)"), ("tall.avi", "16x400 (25:1)")):
        assert records[name]["status"] == "error"
        assert records[name]["error"].startswith(f"frames of {size} are beyond the 16:1 aspect ratio")
    # probe says so beforehand, and leaves frames within 16:1 alone.
    code, out, err = invoke("probe", tmp_path, "--format", "json")
    problems = {Path(r["path"]).name: r["problems"] for r in json.loads(out)}
    assert problems["wide.avi"] == []
    for name, size in (("sliver.avi", "640x16 (40:1)"), ("tall.avi", "16x400 (25:1)")):
        assert problems[name] == [f"frames of {size} are beyond the 16:1 aspect ratio vswin resizes: "
                                  "classify and extract-features fail this video"]


def test_a_header_claiming_gigapixel_frames_fails_alone_before_any_is_decoded(tmp_path, tiny_checkpoint, invoke):
    # A 3 kB GIF whose screen says 16000x16000: FFmpeg paints every frame on that canvas, and the
    # run took 3.8 GB (per decoder) to say "ok". It fails as one video; the batch goes on.
    import media  # tests/media.py

    media.require_ffmpeg()
    bomb = media.gif(tmp_path / "bomb.gif", frames=8, size=(64, 48))
    data = bytearray(bomb.read_bytes())
    data[6:10] = (16000).to_bytes(2, "little") * 2  # the logical screen's width and height
    bomb.write_bytes(bytes(data))
    media.gif(tmp_path / "fine.gif", frames=8, size=(64, 48))
    code, out, err = invoke("classify", tmp_path, "-m", tiny_checkpoint, "--clips", "1", "--crops", "1",
                            "--clip-len", "4", "--format", "json")
    assert code == 1, err
    records = {Path(r["path"]).name: r for r in json.loads(out)}
    assert records["fine.gif"]["status"] == "ok"
    assert records["bomb.gif"]["error"] == ("frames of 16000x16000 (256 megapixels) are beyond the 134 megapixels "
                                             "(16384x8192) vswin decodes")


def test_normalize_views_takes_numpy_frames_as_the_readme_shows():
    # Was: AttributeError ('numpy.ndarray' object has no attribute 'to') for frames from OpenCV/PyAV/decord.
    from vswin_cli.transforms import normalize_views

    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 8, 6, 3), dtype=np.uint8)
    from_numpy = normalize_views(frames)
    assert from_numpy.shape == (2, 3, 4, 8, 6) and from_numpy.dtype == torch.float32
    assert torch.equal(from_numpy, normalize_views(torch.from_numpy(frames)))
    with pytest.raises(ValueError, match=r"RGB frames shaped \(\.\.\., T, H, W, 3\), not \(4, 8, 6\)"):
        normalize_views(frames[0, ..., 0])
    with pytest.raises(TypeError, match="not list"):
        normalize_views([1, 2, 3])
