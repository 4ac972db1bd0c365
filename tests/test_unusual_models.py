"""Models and options that once gave wrong records or tracebacks: a checkpoint without its
classifier head, weights that make NaN, flags a Something-Something v2 model has no use for,
and sliding windows closer than any frame."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import media
from vswin_cli.checkpoints import load_checkpoint, save_native
from vswin_cli.engine import Engine, RunOptions
from vswin_cli.inputs import InputVideo
from vswin_cli.protocol import STHV2

ONE_VIEW = ("--clip-len", "8", "--clips", "1", "--crops", "1")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return media.encode_cv2(tmp_path_factory.mktemp("videos") / "a.avi", frames=30, size=(64, 48))


def _variant(tiny_checkpoint: Path, path: Path, change) -> Path:
    loaded = load_checkpoint(tiny_checkpoint)
    model = loaded.model
    labels = change(model)
    save_native(model, path, labels=labels if labels is not None else loaded.labels)
    return path


def test_a_backbone_without_head_extracts_features_and_refuses_to_classify(video, tiny_checkpoint, invoke, tmp_path):
    backbone = tmp_path / "backbone.pth"
    state = {k: v for k, v in load_checkpoint(tiny_checkpoint).model.state_dict().items() if not k.startswith("head.")}
    torch.save(state, backbone)
    code, out, err = invoke("classify", video, "-m", backbone, *ONE_VIEW)
    assert code == 2 and out == ""
    assert err.splitlines() == [f"error: {backbone} has no classifier head (a backbone-only checkpoint), so it cannot "
                                "classify; use extract-features for its features, or a checkpoint that includes the head"]
    code, _, err = invoke("extract-features", video, "-o", tmp_path / "logits", "-m", backbone, *ONE_VIEW, "--with-logits")
    assert code == 2 and "cannot write class scores (--with-logits); leave out --with-logits for its features alone" in err
    names = tmp_path / "names.txt"
    names.write_text("one class\n")
    code, _, err = invoke("extract-features", video, "-o", tmp_path / "named", "-m", backbone, *ONE_VIEW, "--labels", names)
    # Was: "pass --labels FILE with 0 lines", which no file can be.
    assert code == 2 and err.splitlines() == ["error: the model has no classifier head (a pretrained backbone), so it has "
                                              "no classes to name; leave out --labels"]
    code, _, err = invoke("extract-features", video, "-o", tmp_path / "feats", "-m", backbone, *ONE_VIEW)
    assert code == 0, err
    features = np.load(tmp_path / "feats" / "a.avi.npy")
    # The same pooled features the full model gives the video.
    engine = Engine(load_checkpoint(tiny_checkpoint).model, RunOptions(clip_len=8, clips=1, crops=1, device="cpu"))
    full = next(iter(engine.run([InputVideo(video, video.parent)])))
    np.testing.assert_allclose(features, full.features, atol=1e-6)
    entry = json.loads((tmp_path / "feats" / "index.jsonl").read_text())
    assert entry["status"] == "ok" and entry["shape"] == [features.shape[0]]


def test_weights_that_give_nan_fail_the_video_and_the_output_stays_json(video, tiny_checkpoint, invoke, tmp_path):
    def poison(model):
        with torch.no_grad():
            model.head.bias[3] = float("nan")

    broken = _variant(tiny_checkpoint, tmp_path / "nan.safetensors", poison)
    out = tmp_path / "out.json"
    code, _, err = invoke("classify", video, "-m", broken, *ONE_VIEW, "-o", out)
    assert code == 1, err
    [record] = json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON output"))
    assert record["status"] == "error" and record["predictions"] == []
    assert record["error"] == "the model gave non-finite outputs (NaN or infinity): damaged weights?"
    code, _, err = invoke("extract-features", video, "-o", tmp_path / "feats", "-m", broken, *ONE_VIEW)
    assert code == 1 and not (tmp_path / "feats" / "a.avi.npy").exists()


def test_flags_uniform_sampling_ignores_are_refused_not_reported(video, tiny_checkpoint, invoke, tmp_path):
    # Was: an SSv2 model with --clips 3 --frame-interval 5 ran its one uniform clip and the record
    # said clips 3, frame_interval 5.
    ssv2 = tmp_path / "ssv2.safetensors"
    loaded = load_checkpoint(tiny_checkpoint)
    save_native(loaded.model, ssv2, labels=loaded.labels, protocol=STHV2)
    for flags, named in ((("--clips", "3"), "--clips"), (("--frame-interval", "5"), "--frame-interval"),
                         (("--clips", "3", "--frame-interval", "5"), "--clips and --frame-interval")):
        code, out, err = invoke("classify", video, "-m", ssv2, "--clip-len", "8", *flags)
        assert code == 2 and out == "", err
        assert err.startswith(f"error: {named} do not apply to {ssv2}: its protocol takes --clip-len frames spread"), err
    code, out, err = invoke("classify", video, "-m", ssv2, "--clip-len", "8", "--crops", "1", "--format", "json")
    assert code == 0, err
    [record] = json.loads(out)
    assert len(record["clips"]) == 1 and len(record["clips"][0]["frames"]) == 8
    # With --stride the interval spaces each window's frames: still accepted.
    code, out, err = invoke("classify", video, "-m", ssv2, "--clip-len", "4", "--frame-interval", "3", "--stride", "0.5",
                            "--crops", "1", "--format", "json")
    assert code == 0, err
    frames = json.loads(out)[0]["clips"][0]["frames"]
    assert np.diff(frames).tolist() == [3, 3, 3]


@pytest.mark.parametrize("stride", ["1e-30", "1e-320", "0.0009"])
def test_a_stride_below_a_millisecond_is_a_usage_error(video, tiny_checkpoint, invoke, stride):
    # Was: 1e-30 never finished (window times stopped being distinct), 1e-320 failed every video.
    code, out, err = invoke("classify", video, "-m", tiny_checkpoint, "--stride", stride, "--clip-len", "8")
    assert (code, out) == (2, "") and err.splitlines() == ["error: --stride must be at least 0.001 seconds"]


@pytest.mark.parametrize("flags", [("--clip-len", "1000000000"), ("--clip-len", "1000000", "--stride", "1"),
                                   ("--clips", "100000000", "--clip-len", "8")])
def test_views_larger_than_the_machines_memory_are_a_usage_error(video, tiny_checkpoint, invoke, flags):
    # Was: --clip-len 10**9 planned a billion frame indices per clip until the process was killed.
    code, out, err = invoke("classify", video, "-m", tiny_checkpoint, *flags)
    assert (code, out) == (2, "")
    [line] = err.splitlines()
    assert line.startswith("error: ") and "more than this machine's" in line and line.endswith("lower --clip-len or --clips")


def test_views_that_fit_in_memory_still_run(video, tiny_checkpoint, invoke):
    # A long clip that fits (a 30-frame video, 200 frames wrapping around) is not refused.
    code, out, err = invoke("classify", video, "-m", tiny_checkpoint, "--clip-len", "200", "--clips", "1", "--crops", "1",
                            "--format", "json")
    assert code == 0, err
    assert len(json.loads(out)[0]["clips"][0]["frames"]) == 200


def test_a_model_cast_to_float64_keeps_its_shifted_window_masks(tiny_checkpoint):
    # Was: float64 found no shift masks of its own and attended without them (logits off by 0.5),
    # or sliced the bias alone to nothing (a RuntimeError) where windows are grouped by mask.
    single = load_checkpoint(tiny_checkpoint).model.eval()
    double = copy.deepcopy(single).double()
    torch.manual_seed(1)
    for shape in [(1, 3, 8, 64, 64), (2, 3, 6, 100, 140), (1, 3, 8, 112, 112)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = single(x)
            got = double(x.double())
        assert got.dtype == torch.float64
        assert torch.allclose(got.float(), expected, atol=1e-5), (shape, (got.float() - expected).abs().max())
