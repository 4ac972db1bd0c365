"""The Python API as a notebook or script uses it: `load_model`, `classify`, `extract_features`, `model(x)`.

User mistakes about files and models raise `VswinError`; wrong argument types raise `TypeError`,
wrong tensor shapes `ValueError`, each with a message that says what was expected. A model the
caller passes in comes back as it was (labels, mode).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import media
import vswin_cli
from conftest import TINY_LABELS, REPO
from vswin_cli import VswinError

FAST = dict(clips=1, crops=1, clip_len=4, frame_interval=1)
OTHER_LABELS = [f"other {i}" for i in range(10)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("api")
    media.encode_cv2(root / "a.avi", frames=20, size=(40, 32))
    (root / "sub").mkdir()
    media.encode_cv2(root / "sub" / "b.avi", frames=12, size=(32, 40))
    return root


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return vswin_cli.load_model(tiny_checkpoint)


# --- classify / extract_features: paths ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["str", "Path", "generator", "tuple"])
def test_one_path_or_any_iterable_of_paths(videos, tiny_checkpoint, kind):
    video = videos / "a.avi"
    paths = {"str": str(video), "Path": video, "generator": (p for p in [video]), "tuple": (str(video),)}[kind]
    records = vswin_cli.classify(paths, model=tiny_checkpoint, **FAST)
    assert [(r["path"], r["status"]) for r in records] == [(str(video), "ok")]


def test_paths_that_are_not_paths_are_a_type_error(tiny_checkpoint):
    with pytest.raises(TypeError, match="paths must be str or Path, found 3"):
        vswin_cli.classify([3], model=tiny_checkpoint, **FAST)
    with pytest.raises(TypeError, match="paths must be a path or an iterable of paths, not int"):
        vswin_cli.classify(3, model=tiny_checkpoint, **FAST)


def test_skipped_sub_folders_are_a_warning(videos, tiny_checkpoint):
    with pytest.warns(UserWarning, match=r"skipped 1 sub-folder\(s\); pass recursive=True"):
        records = vswin_cli.classify(videos, model=tiny_checkpoint, **FAST)
    assert [Path(r["path"]).name for r in records] == ["a.avi"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = vswin_cli.classify(videos, model=tiny_checkpoint, recursive=True, **FAST)
    assert [Path(r["path"]).name for r in records] == ["a.avi", "b.avi"]


# --- classify / extract_features: options --------------------------------------------------------


def test_unknown_option_lists_the_options(videos, tiny_checkpoint):
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'output'; the options are clips, crops, clip_len, "):
        vswin_cli.classify([videos / "a.avi"], model=tiny_checkpoint, output="x.json")


@pytest.mark.parametrize(
    "options, error, message",
    [
        (dict(top_k=2.5), TypeError, "top_k must be an integer, not 2.5"),
        (dict(top_k=None), TypeError, "top_k must be an integer, not None"),
        (dict(clips=1.5), TypeError, "clips must be an integer, not 1.5"),
        (dict(clip_len="8"), TypeError, "clip_len must be an integer, not '8'"),
        (dict(crops=True), TypeError, "crops must be an integer, not True"),
        (dict(stride="2"), TypeError, "stride must be a number of seconds, not '2'"),
        (dict(batch_size="4"), TypeError, "batch_size must be an integer or 'auto', not '4'"),
        (dict(device=None), TypeError, "device must be a str, not None"),
        (dict(top_k=0), VswinError, "top-k must be at least 1"),
        (dict(crops=2), VswinError, "crops must be 1 or 3"),
    ],
)
def test_bad_option_values_raise_before_any_video_is_read(videos, tiny_checkpoint, options, error, message):
    with pytest.raises(error, match=re.escape(message)):
        vswin_cli.classify([videos / "a.avi"], model=tiny_checkpoint, **options)
    with pytest.raises(error, match=re.escape(message)):
        vswin_cli.extract_features([videos / "a.avi"], model=tiny_checkpoint, **options)


def test_numpy_integers_and_torch_devices_are_taken(videos, tiny_checkpoint):
    options = dict(clips=np.int64(2), crops=1, clip_len=np.int32(4), frame_interval=1, top_k=np.int64(3))
    (record,) = vswin_cli.classify([videos / "a.avi"], model=tiny_checkpoint, device=torch.device("cpu"), **options)
    assert record["status"] == "ok"
    assert record["views"] == {"clips": 2, "crops": 1, "clip_len": 4, "frame_interval": 1}
    assert len(record["predictions"]) == 3 and len(record["clips"]) == 2


def test_top_k_beyond_the_classes_gives_every_class_once(videos, tiny_checkpoint):
    (record,) = vswin_cli.classify([videos / "a.avi"], model=tiny_checkpoint, top_k=1000, **FAST)
    assert sorted(p["label"] for p in record["predictions"]) == sorted(TINY_LABELS)


# --- classify / extract_features: models and labels ---------------------------------------------


def test_labels_for_a_loaded_model_leave_the_model_alone(videos, model):
    (record,) = vswin_cli.classify([videos / "a.avi"], model=model, labels=OTHER_LABELS, **FAST)
    assert record["predictions"][0]["label"] in OTHER_LABELS
    assert model.labels == TINY_LABELS
    (record,) = vswin_cli.classify([videos / "a.avi"], model=model, **FAST)
    assert record["predictions"][0]["label"] in TINY_LABELS


def test_a_loaded_model_keeps_its_mode(videos, model):
    model.train()
    try:
        vswin_cli.classify([videos / "a.avi"], model=model, **FAST)
        list(vswin_cli.extract_features([videos / "a.avi"], model=model, **FAST))
        assert model.training and all(module.training for module in model.modules())
    finally:
        model.eval()


def test_a_loaded_model_keeps_each_modules_own_mode(videos, model):
    # Was: put back with model.train(flag), which sets every submodule's mode: a model being
    # fine-tuned with frozen parts in eval mode came back with them in train mode.
    model.train()
    model.patch_embed.eval()
    model.layers[0].eval()
    before = {name: module.training for name, module in model.named_modules()}
    try:
        vswin_cli.classify([videos / "a.avi"], model=model, **FAST)
        list(vswin_cli.extract_features([videos / "a.avi"], model=model, **FAST))
        assert {name: module.training for name, module in model.named_modules()} == before
        assert not model.patch_embed.training and model.layers[1].training
    finally:
        model.eval()


def test_overlapping_calls_on_one_model_leave_it_in_its_mode(videos, model):
    # Was: the first call to end put the model back while the other still ran on it, and the
    # model ended in the run's eval mode; a generator never iterated left it changed.
    model.train()
    try:
        first = vswin_cli.extract_features([videos / "a.avi", videos / "sub" / "b.avi"], model=model, recursive=True, **FAST)
        second = vswin_cli.extract_features([videos / "a.avi"], model=model, **FAST)
        next(first)
        next(second)
        assert list(second) == [] and not model.training  # the first still runs on it
        list(first)
        assert model.training and all(module.training for module in model.modules())
        dropped = vswin_cli.extract_features([videos / "a.avi"], model=model, **FAST)
        assert not model.training
        del dropped
        import gc

        gc.collect()
        assert model.training
    finally:
        model.eval()


def test_normalize_views_leaves_float_frames_alone_by_refusing_them():
    # Was: float32 frames were normalised in place (a second call gave other values), and frames
    # in 0-1 were taken as 0-255.
    from vswin_cli.transforms import normalize_views

    frames = torch.full((1, 2, 4, 4, 3), 128.0)
    with pytest.raises(TypeError, match=r"normalize_views takes uint8 frames \(0-255\), not torch.float32"):
        normalize_views(frames)
    assert torch.all(frames == 128.0)


def test_clips_and_stride_together_are_refused_as_in_the_cli(videos, tiny_checkpoint):
    # Was: accepted by the API (clips silently ignored); the CLI refused it.
    with pytest.raises(VswinError, match="--clips and --stride exclude each other"):
        vswin_cli.classify([videos / "a.avi"], model=tiny_checkpoint, clips=2, stride=0.5)


def test_a_folder_that_cannot_be_listed_is_a_warning_in_the_api_too(videos, tiny_checkpoint, monkeypatch):
    from conftest import refuse_listing

    refuse_listing(monkeypatch, videos / "sub")
    with pytest.warns(UserWarning, match=r"could not list .*sub \(Permission denied\), so the videos in it are left out"):
        records = vswin_cli.classify(videos, model=tiny_checkpoint, recursive=True, **FAST)
    assert [Path(r["path"]).name for r in records] == ["a.avi"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_loaded_model_stays_on_its_device(videos, model):
    (record,) = vswin_cli.classify([videos / "a.avi"], model=model, device="cuda", **FAST)
    assert record["status"] == "ok"
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_a_model_of_another_kind_is_a_type_error(videos):
    expected = "model must be a name, hf://owner/repo, a checkpoint path or a model from vswin_cli.load_model, not Linear"
    with pytest.raises(TypeError, match=re.escape(expected)):
        vswin_cli.classify([videos / "a.avi"], model=torch.nn.Linear(2, 2), **FAST)


def test_labels_of_the_wrong_length_say_how_many(videos, model):
    with pytest.raises(VswinError, match="the label list has 2 names but the model has 10 classes"):
        vswin_cli.classify([videos / "a.avi"], model=model, labels=["a", "b"], **FAST)


# --- extract_features ------------------------------------------------------------------------------


def test_extract_features_checks_its_arguments_when_called(videos, tiny_checkpoint):
    with pytest.raises(VswinError, match="no such file or folder"):
        vswin_cli.extract_features([videos / "missing.avi"], model=tiny_checkpoint)
    with pytest.raises(VswinError, match="no such checkpoint file"):
        vswin_cli.extract_features([videos / "a.avi"], model=videos / "missing.safetensors")


def test_extract_features_shapes_and_labels(videos, model):
    options = dict(clips=2, crops=1, clip_len=4, frame_interval=1)
    [(path, pooled, record)] = vswin_cli.extract_features([videos / "a.avi"], model=model, labels=OTHER_LABELS, **options)
    [(_, per_clip, _)] = vswin_cli.extract_features([videos / "a.avi"], model=model, per_clip=True, **options)
    assert path == str(videos / "a.avi")
    assert pooled.shape == (128,) and pooled.dtype == np.float32  # embed 16 * 2 ** 3
    assert per_clip.shape == (2, 128) and per_clip.dtype == np.float32
    np.testing.assert_allclose(pooled, per_clip.mean(axis=0), atol=1e-6)  # one crop: pooled = mean over clips
    assert record["predictions"][0]["label"] in OTHER_LABELS


def test_extract_features_gives_none_for_a_failed_video(videos, model, tmp_path):
    (tmp_path / "notes.avi").write_text("not a video")
    [(_, features, record)] = vswin_cli.extract_features([tmp_path / "notes.avi"], model=model, **FAST)
    assert features is None and record["status"] == "error" and record["error"]


# --- load_model ------------------------------------------------------------------------------------


def test_load_model_takes_labels_from_any_iterable(tiny_checkpoint):
    loaded = vswin_cli.load_model(tiny_checkpoint, labels=(f"g{i}" for i in range(10)))
    assert loaded.labels == [f"g{i}" for i in range(10)]
    with pytest.raises(TypeError, match=r"labels must be class names \(str\); found 3 \(int\)"):
        vswin_cli.load_model(tiny_checkpoint, labels=[*map(str, range(9)), 3])


def test_labels_rename_classes_and_leave_the_protocol_alone(tmp_path, invoke):
    """A Something-Something v2 checkpoint (174 classes, no names inside) samples uniformly; renaming
    its classes must not turn it into a Kinetics model (other frames, other scores)."""
    from vswin_cli.checkpoints import native_to_official
    from vswin_cli.model import SwinConfig, VideoSwin
    from vswin_cli.protocol import STHV2

    torch.manual_seed(0)
    net = VideoSwin(SwinConfig(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), window_size=(4, 7, 7), num_classes=174))
    path = tmp_path / "sthv2.pth"
    torch.save({"state_dict": native_to_official(net.state_dict())}, path)
    names = [f"motion {i}" for i in range(174)]
    assert vswin_cli.load_model(path).protocol == STHV2
    renamed = vswin_cli.load_model(path, labels=names)
    assert renamed.labels == names and renamed.protocol == STHV2
    label_file = tmp_path / "names.txt"
    label_file.write_text("\n".join(names) + "\n")
    video = media.encode_cv2(tmp_path / "v.avi", frames=40, size=(40, 32))
    records = []
    for extra in ([], ["--labels", str(label_file)]):
        code, out, err = invoke("classify", str(video), "-m", str(path), "--clip-len", "4", "--crops", "1", "--format", "json", *extra)
        assert code == 0, err
        records.append(json.loads(out)[0])
    assert [r["views"] for r in records] == [{"clips": 1, "crops": 1, "clip_len": 4, "frame_interval": 2, "sampling": "uniform"}] * 2
    # The official uniform test sampling: segments of (40 - 1) / 4 frames, the middle of each
    # rounded bounds: (0+10)//2, (10+20)//2, (20+29)//2, (29+39)//2.
    assert records[0]["clips"][0]["frames"] == records[1]["clips"][0]["frames"] == [5, 15, 24, 34]
    assert [p["score"] for p in records[0]["predictions"]] == [p["score"] for p in records[1]["predictions"]]
    assert records[1]["predictions"][0]["label"].startswith("motion ")


@pytest.mark.parametrize("device, message", [
    ("gpu", "device must be auto, cpu, cuda, cuda:N or mps, not 'gpu'"),
    ("meta", "device must be auto, cpu, cuda, cuda:N or mps, not 'meta'"),
    ("cuda:x", "device must be auto, cpu, cuda, cuda:N or mps, not 'cuda:x'"),
    ("cuda:99", "CUDA GPU"),
    # Was: a torch.device went unchecked, to torch's AssertionError when the model moved there.
    (torch.device("cuda", 99), "CUDA GPU"),
    (torch.device("meta"), "device must be auto, cpu, cuda, cuda:N or mps, not 'meta'"),
])
def test_load_model_refuses_a_device_it_cannot_use_before_reading_weights(device, message, tmp_path):
    with pytest.raises(VswinError, match=re.escape(message)):
        vswin_cli.load_model(tmp_path / "never read.pth", device=device)


def test_load_model_device_auto_and_torch_device(tiny_checkpoint):
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert {p.device.type for p in vswin_cli.load_model(tiny_checkpoint, device="auto").parameters()} == {expected}
    assert {p.device.type for p in vswin_cli.load_model(tiny_checkpoint, device=torch.device("cpu")).parameters()} == {"cpu"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_load_model_on_a_missing_gpu_named_by_a_torch_device_is_a_vswin_error(tiny_checkpoint):
    # Was: torch's AssertionError ("Torch not compiled with CUDA enabled"), where "cuda" said what to do.
    for device in ("cuda", torch.device("cuda"), torch.device("cuda", 1)):
        with pytest.raises(VswinError, match=re.escape("no CUDA GPU is available; use --device cpu or auto")):
            vswin_cli.load_model(tiny_checkpoint, device=device)


@pytest.mark.parametrize(
    "ref, error, message",
    [
        ("", VswinError, "empty model reference"),
        ("  ", VswinError, "empty model reference"),
        (3, TypeError, "the model reference must be a name, hf://owner/repo or a checkpoint path, not int"),
        ("hf://owner", VswinError, "bad Hub reference 'hf://owner'"),
        ("no-such-model", VswinError, "unknown model 'no-such-model'"),
    ],
)
def test_load_model_bad_references(ref, error, message, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(error, match=re.escape(message)):
        vswin_cli.load_model(ref)


def test_load_model_none_is_the_default_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache, and no network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VswinError, match="model 'swin-t-k400' is not in the cache"):
        vswin_cli.load_model(None)


def test_load_model_of_a_folder_or_truncated_file(tiny_checkpoint, tmp_path):
    with pytest.raises(VswinError, match="is a folder; pass the checkpoint file inside it"):
        vswin_cli.load_model(tmp_path)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(tiny_checkpoint.read_bytes()[:-1000])
    with pytest.raises(VswinError, match="not a readable safetensors file"):
        vswin_cli.load_model(cut)


# --- the model ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, error, message",
    [
        (torch.zeros(3, 4, 32, 32), ValueError, "got shape (3, 4, 32, 32); for one clip (C, T, H, W) add the batch dimension"),
        (torch.zeros(1, 1, 3, 4, 32, 32), ValueError, "got shape (1, 1, 3, 4, 32, 32)"),
        (torch.zeros(1, 1, 4, 32, 32), ValueError, "got 1 channels in shape (1, 1, 4, 32, 32)"),
        (torch.zeros(1, 4, 32, 32, 3), ValueError, "channels last? use x.permute(0, 4, 1, 2, 3)"),
        (torch.zeros(1, 3, 4, 32, 32, dtype=torch.uint8), TypeError, "got torch.uint8; vswin_cli.transforms.normalize_views"),
        (torch.zeros(1, 3, 4, 32, 32, dtype=torch.int64), TypeError, "got torch.int64"),
        (torch.zeros(0, 3, 4, 32, 32), ValueError, "with no empty dimension, got shape (0, 3, 4, 32, 32)"),
        (torch.zeros(1, 3, 0, 32, 32), ValueError, "with no empty dimension, got shape (1, 3, 0, 32, 32)"),
        (np.zeros((1, 3, 4, 32, 32), np.float32), TypeError, "not ndarray"),
    ],
)
def test_model_input_that_cannot_be_meant(model, x, error, message):
    expected = "the model takes a normalised float tensor (B, 3, T, H, W)"
    for call in (model, model.forward_features):
        with pytest.raises(error) as raised:
            call(x)
        assert expected in str(raised.value) and message in str(raised.value)


def test_model_takes_any_float_dtype_and_odd_sizes(model):
    x = torch.randn(2, 3, 7, 30, 45, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        logits = model(x)
        assert logits.shape == (2, 10) and logits.dtype == torch.float32
        torch.testing.assert_close(model(x.double()), logits, atol=1e-5, rtol=0)
        # The official patch embedding zero-pads T, H, W up to the patch size (2, 4, 4).
        padded = torch.nn.functional.pad(x, (0, 3, 0, 2, 0, 1))
        torch.testing.assert_close(model(padded), logits, atol=1e-5, rtol=0)


# --- the package and its documentation -------------------------------------------------------------


def test_lazy_names_are_listed_for_tab_completion():
    assert {"load_model", "classify", "extract_features", "VswinError"} <= set(dir(vswin_cli))


def test_readme_python_example_runs(videos, tiny_checkpoint, monkeypatch):
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    # The same lines with the tiny model and this test's videos for the download and the files,
    # and a protocol of small views for the tiny model (it has none of its own: Kinetics' applies).
    from vswin_cli import protocol

    monkeypatch.setattr(protocol, "KINETICS", protocol.Protocol(clip_len=4, frame_interval=1, num_clips=2, short_side=32, crop_size=32))
    code = code.replace('"swin-t-k400"', repr(str(tiny_checkpoint)))
    code = code.replace('"a.mp4"', repr(str(videos / "a.avi"))).replace('"videos/"', repr(str(videos)))
    frames = torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    scope: dict = {"frames": frames}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["logits"].shape == (2, 10) and scope["feats"].shape == (2, 128)
    torch.testing.assert_close(scope["model"].head(scope["feats"]), scope["logits"])
    assert [r["status"] for r in scope["records"]] == ["ok"] and len(scope["records"][0]["predictions"]) == 3
    assert scope["features"].shape == (128,)
