"""Checkpoint layouts, architecture inference, native safetensors, and refusal of bad files."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import pickletools
import stat
import struct
import threading
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import pytest
import torch

from vswin_cli import checkpoints as ck
from vswin_cli.model import SwinConfig, VideoSwin, swin_b, swin_l, swin_s, swin_t

TINY = SwinConfig(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=(4, 7, 7), num_classes=10)


def random_model(config: SwinConfig = TINY, seed: int = 0) -> VideoSwin:
    torch.manual_seed(seed)
    model = VideoSwin(config)
    with torch.no_grad():
        for tensor in model.parameters():
            tensor.normal_(0, 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def tiny() -> VideoSwin:
    return random_model()


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(1, 3, 8, 64, 64)


def outputs(model: VideoSwin, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def test_official_torchvision_round_trip_is_identical(tiny):
    native = tiny.state_dict()
    official = ck.native_to_official(native)
    assert "cls_head.fc_cls.weight" in official and "backbone.norm.weight" in official
    tv = ck.native_to_torchvision(ck.official_to_native(official))
    assert "patch_embed.proj.weight" in tv and "features.0.0.mlp.0.weight" in tv and "features.1.reduction.weight" in tv
    assert "features.6.1.attn.qkv.weight" in tv and "features.7.reduction.weight" not in tv
    back = ck.native_to_official(ck.torchvision_to_native(tv))
    assert back.keys() == official.keys()
    for key in official:
        assert torch.equal(back[key], official[key]), key


@pytest.mark.parametrize("layout", ["official", "mmaction2", "torchvision", "native", "module-prefix", "model-prefix"])
def test_every_layout_loads_to_the_same_outputs(tmp_path, tiny, clip, layout):
    native = tiny.state_dict()
    if layout == "official":
        saved = {"meta": {"epoch": 30, "config": "model = dict(...)"}, "state_dict": ck.native_to_official(native)}
    elif layout == "mmaction2":
        official = ck.native_to_official(native)
        saved = {"state_dict": {k.replace("backbone.norm.", "backbone.norm3."): v for k, v in official.items()}}
    elif layout == "torchvision":
        saved = ck.native_to_torchvision(native)
    elif layout == "native":
        saved = dict(native)
    elif layout == "module-prefix":
        saved = {"module." + k: v for k, v in ck.native_to_official(native).items()}
    else:
        saved = {"model": {"model." + k: v for k, v in native.items()}}
    path = tmp_path / "ckpt.pth"
    torch.save(saved, path)
    loaded = ck.load_checkpoint(path)
    expected_layout = {"module-prefix": "official", "model-prefix": "native"}.get(layout, layout)
    assert loaded.layout == expected_layout
    assert loaded.model.config == TINY
    assert torch.equal(outputs(loaded.model, clip), outputs(tiny, clip))


def test_relative_position_index_buffers_in_a_checkpoint_are_accepted(tmp_path, tiny, clip):
    state = ck.native_to_official(tiny.state_dict())
    for name, module in tiny.named_modules():
        if hasattr(module, "relative_position_index"):
            state[f"backbone.{name}.relative_position_index"] = module.relative_position_index
    torch.save({"state_dict": state}, tmp_path / "with_index.pth")
    loaded = ck.load_checkpoint(tmp_path / "with_index.pth")
    assert torch.equal(outputs(loaded.model, clip), outputs(tiny, clip))


@pytest.mark.parametrize(
    "builder,window,expected",
    [
        (swin_t, (8, 7, 7), (96, (2, 2, 6, 2), (3, 6, 12, 24))),
        (swin_s, (8, 7, 7), (96, (2, 2, 18, 2), (3, 6, 12, 24))),
        (swin_b, (8, 7, 7), (128, (2, 2, 18, 2), (4, 8, 16, 32))),
        (swin_b, (16, 7, 7), (128, (2, 2, 18, 2), (4, 8, 16, 32))),
        (swin_l, (8, 7, 7), (192, (2, 2, 18, 2), (6, 12, 24, 48))),
    ],
)
def test_architecture_is_read_from_tensor_shapes(builder, window, expected):
    with torch.device("meta"):
        model = builder(num_classes=174, window_size=window)
    config = ck.infer_config(ck.to_native(ck.native_to_torchvision(model.state_dict()))[0])
    assert (config.embed_dim, config.depths, config.num_heads) == expected
    assert config.window_size == window
    assert config.num_classes == 174
    assert config.patch_size == (2, 4, 4) and config.mlp_ratio == 4.0


def test_native_safetensors_round_trip_is_bit_identical(tmp_path, tiny, clip):
    labels = [f"name, with comma {i}" for i in range(10)]
    path = ck.save_native(tiny, tmp_path / "tiny.safetensors", labels=labels, source_sha256="ab" * 32)
    loaded = ck.load_checkpoint(path)
    assert loaded.layout == "native"
    assert loaded.labels == labels
    assert loaded.metadata["source_sha256"] == "ab" * 32
    assert json.loads(loaded.metadata["config"])["window_size"] == [4, 7, 7]
    assert torch.equal(outputs(loaded.model, clip), outputs(tiny, clip))
    assert torch.equal(loaded.model.forward_features(clip), tiny.forward_features(clip))


def test_cli_convert_writes_native_safetensors_from_official(tmp_path, tiny, clip, vswin):
    src = tmp_path / "official.pth"
    torch.save({"state_dict": ck.native_to_official(tiny.state_dict())}, src)
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("".join(f"class {i}\n" for i in range(10)))
    dst = tmp_path / "out.safetensors"
    result = vswin("convert", src, dst, "--labels", labels_file)
    assert result.returncode == 0, result.stderr
    loaded = ck.load_checkpoint(dst)
    assert loaded.labels == [f"class {i}" for i in range(10)]
    assert loaded.metadata["source_sha256"] == ck.file_sha256(src)
    assert torch.equal(outputs(loaded.model, clip), outputs(tiny, clip))


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {_Exploit.marker}",))


def _bad_files(tmp_path: Path, tiny: VideoSwin) -> dict[str, Path]:
    files: dict[str, Path] = {}
    good = tmp_path / "good.pth"
    torch.save({"state_dict": ck.native_to_official(tiny.state_dict())}, good)
    data = good.read_bytes()
    files["empty"] = tmp_path / "empty.pth"
    files["empty"].write_bytes(b"")
    files["truncated"] = tmp_path / "truncated.pth"
    files["truncated"].write_bytes(data[: len(data) // 2])
    corrupted = bytearray(data)
    for i in range(200, len(corrupted), 97):
        corrupted[i] ^= 0xFF
    files["corrupted"] = tmp_path / "corrupted.pth"
    files["corrupted"].write_bytes(bytes(corrupted))
    files["text"] = tmp_path / "notes.pth"
    files["text"].write_text("this is not a checkpoint\n")
    files["image-model"] = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8), "fc.bias": torch.zeros(10)}, files["image-model"])
    files["random-pickle"] = tmp_path / "random.pkl"
    files["random-pickle"].write_bytes(pickle.dumps({"a": [1, 2, 3], "b": "text"}))
    files["code"] = tmp_path / "exploit.pth"
    _Exploit.marker = str(tmp_path / "PWNED")
    torch.save({"state_dict": _Exploit()}, files["code"])
    files["bad-safetensors"] = tmp_path / "bad.safetensors"
    files["bad-safetensors"].write_bytes((20).to_bytes(8, "little") + b'{"a": 1')
    files["missing"] = tmp_path / "nope.pth"
    files["directory"] = tmp_path / "adir.pth"
    files["directory"].mkdir()
    return files


def test_bad_checkpoints_raise_one_line_errors(tmp_path, tiny):
    for name, path in _bad_files(tmp_path, tiny).items():
        with pytest.raises(ck.CheckpointError) as info:
            ck.load_checkpoint(path)
        message = str(info.value)
        assert "\n" not in message and message, name
    assert not (tmp_path / "PWNED").exists(), "a checkpoint's code was executed"


def test_code_carrying_checkpoint_is_refused_with_its_reason(tmp_path, tiny):
    files = _bad_files(tmp_path, tiny)
    with pytest.raises(ck.CheckpointError, match="refusing"):
        ck.load_checkpoint(files["code"])
    with pytest.raises(ck.CheckpointError, match="could not place"):
        torch.save({**ck.native_to_official(tiny.state_dict()), "backbone.extra.weight": torch.zeros(1)}, tmp_path / "x.pth")
        ck.load_checkpoint(tmp_path / "x.pth")
    with pytest.raises(ck.CheckpointError, match="unknown layout"):
        ck.load_checkpoint(files["image-model"])


class _TrainingLog:
    """Stands for a training tool's class (mmengine's HistoryBuffer): pickled beside the weights."""

    marker = ""

    def __init__(self) -> None:
        import numpy as np

        self.history = np.array([0.5, 0.25])

    def __setstate__(self, state: dict) -> None:  # would run if the loader built this class
        Path(_TrainingLog.marker).touch()
        self.__dict__.update(state)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_checkpoints_of_training_tools_load_without_running_their_classes(tmp_path, tiny, clip, monkeypatch, zipped):
    # mmcv (official releases) keeps the best score in meta as a NumPy float; mmengine (mmaction2
    # 1.x) pickles its own log classes. The weights load; the other objects are never built.
    import sys
    import types

    import numpy as np

    official = ck.native_to_official(tiny.state_dict())
    module = types.ModuleType("trainer_tool.logging")
    monkeypatch.setitem(sys.modules, "trainer_tool", types.ModuleType("trainer_tool"))
    monkeypatch.setitem(sys.modules, "trainer_tool.logging", module)
    _TrainingLog.__module__ = module.__name__
    module._TrainingLog = _TrainingLog
    _TrainingLog.marker = str(tmp_path / "BUILT")
    files = {
        "mmcv": {"meta": {"hook_msgs": {"best_score": np.float64(0.788), "last_ckpt": "x.pth"}, "epoch": 30}, "state_dict": official},
        "mmengine": {"meta": {"epoch": 3, "seed": np.int64(0)}, "state_dict": official,
                     "message_hub": {"log_scalars": {"loss": _TrainingLog()}, "history": np.arange(3.0)}},
    }
    for name, content in files.items():
        torch.save(content, tmp_path / f"{name}.pth", _use_new_zipfile_serialization=zipped)
    for name in files:
        loaded = ck.load_checkpoint(tmp_path / f"{name}.pth")
        assert loaded.layout == "official"
        assert torch.equal(outputs(loaded.model, clip), outputs(tiny, clip)), name
    assert not (tmp_path / "BUILT").exists(), "a class named in the checkpoint was built"


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_a_checkpoint_that_names_code_to_run_is_refused_and_nothing_runs(tmp_path, tiny, zipped):
    _Exploit.marker = str(tmp_path / "PWNED")
    path = tmp_path / "exploit.pth"
    torch.save({"meta": {"x": _Exploit()}, "state_dict": ck.native_to_official(tiny.state_dict())}, path,
               _use_new_zipfile_serialization=zipped)
    with pytest.raises(ck.CheckpointError, match=r"refusing .*: it asks to run code \((os|posix)\.system\)"):
        ck.load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_other_files_are_not_called_unsafe(tmp_path, tiny):
    text = tmp_path / "clip.mp4"
    text.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a checkpoint at all")
    with pytest.raises(ck.CheckpointError) as caught:
        ck.load_checkpoint(text)
    assert "refusing" not in str(caught.value) and "not a" in str(caught.value)
    whole = tmp_path / "whole.pth"
    torch.save(tiny, whole)  # the module itself, not its state_dict
    with pytest.raises(ck.CheckpointError, match=r"whole pickled object \(vswin_cli\.model\.VideoSwin\).*state_dict\(\)"):
        ck.load_checkpoint(whole)


@pytest.mark.parametrize("name", ["empty", "truncated", "text", "image-model", "code", "random-pickle"])
def test_cli_bad_checkpoint_exits_2_with_one_line(tmp_path, tiny, vswin, name):
    path = _bad_files(tmp_path, tiny)[name]
    result = vswin("convert", path, tmp_path / "out.safetensors")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.safetensors").exists()


# --- convert: what the native file carries, where it can go --------------------------------------


def test_converted_torchvision_port_keeps_its_test_protocol(tmp_path, tiny, clip, vswin):
    src = tmp_path / "swin3d_t.pth"
    torch.save(ck.native_to_torchvision(tiny.state_dict()), src)
    dst = tmp_path / "swin3d_t.safetensors"
    result = vswin("convert", src, dst)
    assert result.returncode == 0, result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(f"wrote {dst} ")
    loaded = ck.load_checkpoint(dst)
    # torchvision's evaluation: 12 clips of 32 frames 2 apart, short side 256, one centre crop 224.
    protocol = loaded.protocol
    assert protocol is not None
    assert (protocol.sampling, protocol.clip_len, protocol.frame_interval, protocol.num_clips) == ("clips", 32, 2, 12)
    assert (protocol.num_crops, protocol.short_side, protocol.crop_size) == (1, 256, 224)
    assert torch.equal(outputs(loaded.model, clip), outputs(tiny, clip))
    # ... and the model loaded from it runs that protocol, as the source file's does.
    from vswin_cli.loading import load_model

    assert load_model(str(dst)).protocol == load_model(str(src)).protocol == protocol
    # A file saved without one says so.
    assert ck.load_checkpoint(ck.save_native(tiny, tmp_path / "plain.safetensors")).protocol is None


@pytest.mark.parametrize("wrap", ["encoder", "teacher-backbone", "ema-model"])
def test_a_wrapper_prefix_of_any_name_is_removed(tmp_path, tiny, clip, wrap):
    official = ck.native_to_official(tiny.state_dict())
    if wrap == "encoder":
        saved = {"encoder." + k: v for k, v in official.items()}
    elif wrap == "teacher-backbone":
        saved = {"state_dict": {"teacher.net." + k: v for k, v in tiny.state_dict().items()}, "epoch": 3}
    else:
        saved = {"model": {"ema_model.module." + k: v for k, v in ck.native_to_torchvision(tiny.state_dict()).items()}}
    torch.save(saved, tmp_path / "wrapped.pth")
    loaded = ck.load_checkpoint(tmp_path / "wrapped.pth")
    assert loaded.model.config == TINY
    assert torch.equal(outputs(loaded.model, clip), outputs(tiny, clip))


def test_keys_under_several_unknown_prefixes_are_still_refused(tmp_path, tiny):
    native = tiny.state_dict()
    torch.save({**{"a." + k: v for k, v in native.items()}, "b.extra": torch.zeros(1)}, tmp_path / "two.pth")
    with pytest.raises(ck.CheckpointError, match="unknown layout"):
        ck.load_checkpoint(tmp_path / "two.pth")


def test_convert_destination_problems_are_one_line(tmp_path, tiny, invoke, read_only):
    src = tmp_path / "official.pth"
    torch.save({"state_dict": ck.native_to_official(tiny.state_dict())}, src)
    (tmp_path / "folder.safetensors").mkdir()
    code, _, err = invoke("convert", src, tmp_path / "folder.safetensors")
    assert code == 2
    assert err.splitlines() == [f"error: the destination {tmp_path / 'folder.safetensors'} is a folder; give a file name ending in .safetensors"]
    assert list((tmp_path / "folder.safetensors").iterdir()) == []
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    code, _, err = invoke("convert", src, locked / "x.safetensors")
    assert code == 1
    assert err.splitlines() == [f"error: cannot write {locked / 'x.safetensors'}: permission denied"]
    assert list(locked.iterdir()) == []
    long = tmp_path / ("a" * 260 + ".safetensors")  # was: an ENAMETOOLONG traceback
    code, _, err = invoke("convert", src, long)
    assert code == 1
    assert err.splitlines() == [f"error: cannot write {long}: file name too long; check the path or choose another output"]
    # The extension is matched whatever its case; nothing but the file is left beside it.
    code, _, err = invoke("convert", src, tmp_path / "X.SafeTensors")
    assert code == 0, err
    assert ck.load_checkpoint(tmp_path / "X.SafeTensors").model.config == TINY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.SafeTensors", "folder.safetensors", "locked", "official.pth"]


def test_convert_through_a_symbolic_link_rewrites_its_target(tmp_path, tiny, invoke):
    src = tmp_path / "official.pth"
    torch.save({"state_dict": ck.native_to_official(tiny.state_dict())}, src)
    (tmp_path / "releases").mkdir()
    target = tmp_path / "releases" / "v1.safetensors"
    target.write_bytes(b"old")
    link = tmp_path / "current.safetensors"
    link.symlink_to(Path("releases") / "v1.safetensors")
    code, _, err = invoke("convert", src, link)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(Path("releases") / "v1.safetensors")
    assert ck.load_checkpoint(target).model.config == TINY
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == ["v1.safetensors"]  # no temporary left


def test_converting_a_checkpoint_without_head_prints_one_line(tmp_path, tiny, clip, vswin):
    src = tmp_path / "backbone.pth"
    torch.save({k: v for k, v in tiny.state_dict().items() if not k.startswith("head.")}, src)
    result = vswin("convert", src, tmp_path / "backbone.safetensors")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"wrote {tmp_path / 'backbone.safetensors'} (embed 16, depths [2, 2, 2, 2], window [4, 7, 7], 0 classes)"]
    loaded = ck.load_checkpoint(tmp_path / "backbone.safetensors")
    with torch.inference_mode():
        assert torch.equal(loaded.model.forward_features(clip), tiny.forward_features(clip))


# --- files that once loaded wrongly or ended in a traceback -------------------------------------


def test_a_pickle_named_safetensors_loads_as_what_it_is(tmp_path, tiny, clip):
    # torch.load hands any path ending in .safetensors to the safetensors reader.
    renamed = tmp_path / "model.safetensors"
    torch.save({"state_dict": ck.native_to_official(tiny.state_dict())}, renamed)
    assert torch.equal(outputs(ck.load_checkpoint(renamed).model, clip), outputs(tiny, clip))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(b"\x08\x00\x00\x00\x00")
    with pytest.raises(ck.CheckpointError) as info:
        ck.load_checkpoint(cut)
    assert "\n" not in str(info.value)


def test_an_image_swin_checkpoint_is_refused(tmp_path, tiny):
    # microsoft/Swin-Transformer's layout uses the same names, with a 2D patch embedding.
    state = dict(tiny.state_dict())
    state["patch_embed.proj.weight"] = torch.zeros(16, 3, 4, 4)
    torch.save({"model": state}, tmp_path / "swin_tiny_patch4_window7_224.pth")
    with pytest.raises(ck.CheckpointError, match="patch embedding has 4 dimensions.*image Swin"):
        ck.load_checkpoint(tmp_path / "swin_tiny_patch4_window7_224.pth")


def test_a_window_other_than_7_is_read_right_or_refused_without_the_index(tmp_path, clip):
    # vswin's own state_dict() has no relative_position_index: the table's length alone decides.
    cube = random_model(SwinConfig(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=(4, 4, 4), num_classes=3))
    torch.save(cube.state_dict(), tmp_path / "cube.pth")  # 7*7*7 rows: 4x4x4 (1x1 spatial is no Swin)
    loaded = ck.load_checkpoint(tmp_path / "cube.pth").model
    assert loaded.config.window_size == (4, 4, 4)
    assert torch.equal(outputs(loaded, clip), outputs(cube, clip))
    odd = random_model(SwinConfig(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=(8, 5, 5), num_classes=3))
    torch.save(odd.state_dict(), tmp_path / "odd.pth")  # 15*9*9 rows: 8x5x5 or 68x2x2
    with pytest.raises(ck.CheckpointError, match="cannot tell the attention window.*68x2x2 or 8x5x5"):
        ck.load_checkpoint(tmp_path / "odd.pth")
    state = dict(odd.state_dict())
    for name, module in odd.named_modules():
        if hasattr(module, "relative_position_index"):
            state[f"{name}.relative_position_index"] = module.relative_position_index
    torch.save(state, tmp_path / "odd_with_index.pth")
    loaded = ck.load_checkpoint(tmp_path / "odd_with_index.pth").model
    assert loaded.config.window_size == (8, 5, 5)
    assert torch.equal(outputs(loaded, clip), outputs(odd, clip))


def test_safetensors_metadata_another_tool_wrote_is_not_a_traceback(tmp_path, tiny, clip):
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in tiny.state_dict().items()}
    save_file(tensors, tmp_path / "other.safetensors", metadata={"format": "pt", "labels": "cat,dog,bird"})
    loaded = ck.load_checkpoint(tmp_path / "other.safetensors")
    assert loaded.labels is None and torch.equal(outputs(loaded.model, clip), outputs(tiny, clip))
    ck.save_native(tiny, tmp_path / "native.safetensors", labels=[f"c{i}" for i in range(10)])
    assert ck.load_checkpoint(tmp_path / "native.safetensors").labels == [f"c{i}" for i in range(10)]
    native = ck.read_checkpoint(tmp_path / "native.safetensors")[1]
    for key, value in (("labels", "cat,dog"), ("config", "{not json")):
        save_file(tensors, tmp_path / f"bad_{key}.safetensors", metadata={**native, key: value})
        with pytest.raises(ck.CheckpointError, match="in its metadata that (is|are) not"):
            ck.load_checkpoint(tmp_path / f"bad_{key}.safetensors")


@pytest.mark.parametrize("change", [{"num_classes": "10"}, {"window_size": [0, 7, 7]}, {"depths": [], "num_heads": []},
                                    {"mlp_ratio": "4"}, {"embed_dim": 32.5}, {"num_heads": [3, 2, 2, 4]}])
def test_an_impossible_architecture_in_native_metadata_is_one_line(tmp_path, tiny, change):
    # Was: a TypeError, RuntimeError or ValueError traceback from building the model.
    from safetensors.torch import save_file

    ck.save_native(tiny, tmp_path / "native.safetensors")
    tensors, metadata = ck.read_checkpoint(tmp_path / "native.safetensors")[:2]
    config = {**json.loads(metadata["config"]), **change}
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp_path / "bad.safetensors",
              metadata={**metadata, "config": json.dumps(config)})
    with pytest.raises(ck.CheckpointError, match="has an architecture in its metadata that is not one"):
        ck.load_checkpoint(tmp_path / "bad.safetensors")


def test_an_official_checkpoint_with_an_uncommon_mlp_ratio_loads(tmp_path, clip):
    # int(dim * 2.7) per stage: 43, 86, 172, 345 hidden units for 16..128 channels. Stage 0's
    # 43/16 = 2.6875 gives 344 in the last stage: the checkpoint was refused as the wrong shape.
    model = random_model(SwinConfig(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), window_size=(4, 7, 7),
                                    num_classes=6, mlp_ratio=2.7))
    assert [layer.blocks[0].mlp.fc1.out_features for layer in model.layers] == [43, 86, 172, 345]
    torch.save({"meta": {}, "state_dict": ck.native_to_official(model.state_dict())}, tmp_path / "ratio.pth")
    loaded = ck.load_checkpoint(tmp_path / "ratio.pth").model
    assert loaded.config.mlp_ratio == 2.7
    assert torch.equal(outputs(loaded, clip), outputs(model, clip))


def test_a_damaged_legacy_pickle_is_one_line(tmp_path, tiny):
    # torch's pre-1.6 format: four pickles (magic number, protocol, system info, the object), the
    # list of storage keys, then the storages. A key in that list changed by damage made torch
    # assert (a traceback).
    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": tiny.state_dict()}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    stream = io.BytesIO(data)
    for _ in range(3):
        pickle.load(stream)
    for opcode, _, _ in pickletools.genops(stream):  # walk over the object without building it
        if opcode.name == "STOP":
            break
    keys_at = stream.tell()
    key = pickle.load(stream)[0].encode()
    renamed = bytes(48 + (c - 48 + 1) % 10 for c in key)  # another number of the same length
    at = data.index(key, keys_at)
    path.write_bytes(data[:at] + renamed + data[at + len(key):])
    with pytest.raises(ck.CheckpointError, match="is not a readable PyTorch checkpoint"):
        ck.load_checkpoint(path)


def test_a_counter_beside_the_state_dict_does_not_hide_it(tmp_path, tiny, clip):
    torch.save({"state_dict": ck.native_to_official(tiny.state_dict()), "step": torch.tensor(100)}, tmp_path / "ckpt.pth")
    assert torch.equal(outputs(ck.load_checkpoint(tmp_path / "ckpt.pth").model, clip), outputs(tiny, clip))


def test_a_checkpoint_path_that_is_a_device_or_pipe_is_named_so(tmp_path):
    # Was: "no such checkpoint file: /dev/zero" for a path that exists; a FIFO read as a pickle blocks.
    from vswin_cli.errors import VswinError
    from vswin_cli.hub import resolve_checkpoint

    fifo = tmp_path / "model.pth"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(VswinError, match="is not a regular file \\(a device, pipe or socket\\)"):
            resolve_checkpoint(str(path))
        with pytest.raises(ck.CheckpointError, match="is not a regular file"):
            ck.read_checkpoint(path)


def test_a_model_for_other_than_rgb_frames_is_refused_when_loaded(tmp_path, clip, vswin):
    # Was: loaded (and converted) fine, then a traceback for every video, nothing written.
    grey = random_model(SwinConfig(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), window_size=(4, 7, 7),
                                   num_classes=10, in_channels=1))
    torch.save({"state_dict": ck.native_to_official(grey.state_dict())}, tmp_path / "grey.pth")
    with pytest.raises(ck.CheckpointError, match="takes 1 input channel.*RGB video"):
        ck.load_checkpoint(tmp_path / "grey.pth")
    result = vswin("convert", tmp_path / "grey.pth", tmp_path / "grey.safetensors")
    assert result.returncode == 2 and "RGB video" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "grey.safetensors").exists()


@pytest.mark.parametrize("damage", ["heads", "hidden"])
def test_shapes_no_video_swin_has_are_one_line(tmp_path, tiny, damage):
    # Was: a ValueError traceback (exit 1) from building the model, where the README promises VswinError.
    state = dict(tiny.state_dict())
    if damage == "heads":  # 3 heads on stage 0's 16 channels
        table = state["layers.0.blocks.0.attn.relative_position_bias_table"]
        state["layers.0.blocks.0.attn.relative_position_bias_table"] = torch.zeros(table.shape[0], 3)
    else:  # an MLP of no units
        state["layers.0.blocks.0.mlp.fc1.weight"] = torch.zeros(0, 16)
    torch.save({"state_dict": ck.native_to_official(state)}, tmp_path / "odd.pth")
    with pytest.raises(ck.CheckpointError, match="not a Video Swin checkpoint vswin can build"):
        ck.load_checkpoint(tmp_path / "odd.pth")


def test_something_something_names_in_template_spelling_keep_its_protocol(tmp_path):
    # Its annotations write "Putting [something] into [something]"; the label map drops the brackets.
    # Names in that spelling switched the model to the Kinetics protocol (other frames, other scores).
    from vswin_cli import load_model
    from vswin_cli.protocol import KINETICS, STHV2
    from vswin_cli.registry import load_labels

    model = random_model(SwinConfig(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), window_size=(4, 7, 7),
                                    num_classes=174))
    names = load_labels("sthv2")
    templates = [name.replace("something", "[something]") for name in names]
    assert templates != names
    for labels, expected in ((names, STHV2), (templates, STHV2), (names[::-1], KINETICS)):
        ck.save_native(model, tmp_path / "ssv2.safetensors", labels=labels)
        loaded = load_model(tmp_path / "ssv2.safetensors")
        assert loaded.protocol == expected and loaded.labels == labels


def with_index_buffers(model: VideoSwin) -> dict[str, torch.Tensor]:
    """``model``'s state dict with the relative_position_index buffers, as the official code saves them."""
    state = dict(model.state_dict())
    for name, module in model.named_modules():
        if hasattr(module, "relative_position_index"):
            state[f"{name}.relative_position_index"] = module.relative_position_index
    return state


@pytest.mark.parametrize("window", [(7, 7, 2), (3, 7, 8), (2, 7, 7)])
def test_a_saved_relative_position_index_settles_any_window(tmp_path, window):
    # (7,7,2) has the table length and token count of (2,7,7): it was read as that, and logits
    # were off by 0.035 with no error; (3,7,8) was refused ("cannot infer the attention window").
    model = random_model(SwinConfig(embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=window, num_classes=5))
    torch.save({"state_dict": ck.native_to_official(with_index_buffers(model))}, tmp_path / "w.pth")
    loaded = ck.load_checkpoint(tmp_path / "w.pth").model
    assert loaded.config.window_size == window
    x = torch.randn(1, 3, 16, 64, 64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(outputs(loaded, x), outputs(model, x))


def test_an_index_of_no_window_is_refused(tmp_path):
    model = random_model(SwinConfig(embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=(2, 7, 7), num_classes=5))
    state = with_index_buffers(model)
    for key in [k for k in state if k.endswith("relative_position_index")]:
        state[key] = state[key].flip(0)
    torch.save({"state_dict": ck.native_to_official(state)}, tmp_path / "w.pth")
    with pytest.raises(ck.CheckpointError, match=r"relative_position_index \(98x98\) is that of no attention window"):
        ck.load_checkpoint(tmp_path / "w.pth")


def test_a_backbone_built_without_qkv_bias_loads(tmp_path, tiny, clip):
    # The official backbone's qkv_bias=False: refused as "2 key(s) missing", though a zero bias is
    # the same arithmetic.
    model = random_model()
    with torch.no_grad():
        for block in (b for layer in model.layers for b in layer.blocks):
            block.attn.qkv.bias.zero_()
    state = {k: v for k, v in ck.native_to_official(model.state_dict()).items() if not k.endswith("attn.qkv.bias")}
    torch.save({"state_dict": state}, tmp_path / "noqkvbias.pth")
    assert torch.equal(outputs(ck.load_checkpoint(tmp_path / "noqkvbias.pth").model, clip), outputs(model, clip))
    del state["backbone.layers.0.blocks.0.attn.qkv.weight"]  # what is missing beside them is still said
    torch.save({"state_dict": state}, tmp_path / "damaged.pth")
    with pytest.raises(ck.CheckpointError, match="missing, e.g. layers.0.blocks.0.attn.qkv.weight"):
        ck.load_checkpoint(tmp_path / "damaged.pth")


def test_convert_refuses_a_read_only_destination(tmp_path, tiny, invoke):
    # Was: replaced by a rename (exit 0) and made writable again.
    src = tmp_path / "official.pth"
    torch.save({"state_dict": ck.native_to_official(tiny.state_dict())}, src)
    kept = tmp_path / "kept.safetensors"
    kept.write_bytes(b"someone's weights")
    kept.chmod(0o444)
    code, _, err = invoke("convert", src, kept)
    assert code == 2
    assert err.splitlines() == [f"error: {kept} is read-only; make it writable (chmod u+w) or choose another output"]
    assert kept.read_bytes() == b"someone's weights" and stat.S_IMODE(kept.stat().st_mode) == 0o444


def _official_pth(tmp_path: Path, tiny: VideoSwin, change: Callable[[dict], None] = lambda state: None) -> Path:
    state = ck.native_to_official(tiny.state_dict())
    change(state)
    path = tmp_path / "official.pth"
    torch.save({"state_dict": state}, path)
    return path


def test_a_pth_whose_bytes_fail_their_checksum_is_refused(tmp_path, tiny):
    # Was: loaded (torch.load checks no CRC) and run with the changed weights, exit 0.
    path = _official_pth(tmp_path, tiny)
    with zipfile.ZipFile(path) as archive:
        largest = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[largest.header_offset + 26: largest.header_offset + 30])
    start = largest.header_offset + 30 + name_length + extra_length
    data[start + largest.file_size // 2] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ck.CheckpointError) as caught:
        ck.load_checkpoint(path)
    assert str(caught.value) == (f"{path} is damaged: its part {largest.filename} does not match its checksum; "
                                 "download or copy it again")


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.complex64])
def test_weights_that_are_not_real_numbers_are_refused(tmp_path, tiny, dtype):
    # Was: cast to float and run as other weights (int16: one class at probability 1.0), exit 0.
    def retype(state: dict) -> None:
        state["backbone.norm.weight"] = (state["backbone.norm.weight"] * 100).to(dtype)

    with pytest.raises(ck.CheckpointError) as caught:
        ck.load_checkpoint(_official_pth(tmp_path, tiny, retype))
    name = str(dtype).removeprefix("torch.")
    assert str(caught.value) == f"checkpoint tensor norm.weight holds {name} values, not real numbers: a damaged or foreign checkpoint"


def test_a_sparse_tensor_is_refused_in_one_line(tmp_path, tiny):
    # Was: a RuntimeError traceback from load_state_dict.
    def sparse(state: dict) -> None:
        state["backbone.norm.weight"] = state["backbone.norm.weight"].to_sparse()

    with pytest.raises(ck.CheckpointError, match="checkpoint tensor norm.weight is a torch.sparse_coo cpu tensor, not plain weights"):
        ck.load_checkpoint(_official_pth(tmp_path, tiny, sparse))


def test_an_architecture_that_does_not_fit_the_tensors_is_refused_before_any_model_is_built(tmp_path, tiny, monkeypatch):
    # Was: the model of the metadata's architecture built first (a damaged embed_dim of 4096 took
    # gigabytes and half a minute), then compared with the tensors.
    built: list[str] = []
    real = ck.VideoSwin

    def counting(config):
        model = real(config)
        built.append(model.head.weight.device.type)
        return model

    monkeypatch.setattr(ck, "VideoSwin", counting)
    with pytest.raises(ck.CheckpointError, match="has shape"):
        ck.model_from_state_dict(tiny.state_dict(), dataclasses.replace(TINY, embed_dim=32))
    assert built == ["meta"]


def test_an_architecture_of_sizes_torch_cannot_hold_is_one_line(tmp_path, tiny):
    # embed_dim 10**30 in a native file's metadata. Was: a TypeError traceback ("Overflow when unpacking long long").
    from safetensors.torch import save_file

    ck.save_native(tiny, tmp_path / "native.safetensors")
    tensors, metadata = ck.read_checkpoint(tmp_path / "native.safetensors")[:2]
    config = {**json.loads(metadata["config"]), "embed_dim": 10**30, "num_heads": [1, 1, 1, 1]}
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp_path / "huge.safetensors",
              metadata={**metadata, "config": json.dumps(config)})
    with pytest.raises(ck.CheckpointError, match="the architecture the checkpoint describes cannot be built"):
        ck.load_checkpoint(tmp_path / "huge.safetensors")


def test_a_window_too_large_for_any_video_swin_is_refused(tmp_path):
    # A bias table of 41^3 rows reads as a 21x21x21 window, whose index took 7 GB before the model was refused.
    with pytest.raises(ValueError, match=r"window_size \[21, 21, 21\] holds 9261 tokens"):
        SwinConfig(embed_dim=16, depths=(1,), num_heads=(1,), window_size=(21, 21, 21))
    model = random_model(SwinConfig(embed_dim=16, depths=(1,), num_heads=(1,), window_size=(16, 7, 7), num_classes=3))
    state = model.state_dict()
    state["layers.0.blocks.0.attn.relative_position_bias_table"] = torch.zeros(41 ** 3, 1)
    with pytest.raises(ck.CheckpointError, match="holds 9261 tokens"):
        ck.model_from_state_dict(state)


@pytest.mark.parametrize("key", ["labels", "config", "protocol"])
def test_metadata_nested_past_the_recursion_limit_is_one_line(tmp_path, tiny, key):
    # Was: a RecursionError traceback.
    from safetensors.torch import save_file

    ck.save_native(tiny, tmp_path / "native.safetensors", labels=[f"c{i}" for i in range(10)])
    tensors, metadata = ck.read_checkpoint(tmp_path / "native.safetensors")[:2]
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp_path / "deep.safetensors",
              metadata={**metadata, key: "[" * 100_000 + "]" * 100_000})
    with pytest.raises(ck.CheckpointError, match="in its metadata that (is|are) not"):
        ck.load_checkpoint(tmp_path / "deep.safetensors")


# --- torch's notes, hidden without touching anyone else's warnings --------------------------------

HEADLESS = dataclasses.replace(TINY, depths=(1,), num_heads=(1,), num_classes=0)


def test_only_torchs_own_notes_are_hidden(tmp_path, tiny, monkeypatch):
    # Was: every warning was ignored while a model was built or a pickle read, another thread's too.
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        ck._built(HEADLESS)  # torch notes that the 0-class head's init is a no-op
        torch.save({"state_dict": tiny.state_dict()}, tmp_path / "p4.pth", pickle_protocol=4)
        with pytest.raises(ck.CheckpointError):  # torch notes the protocol (then cannot read it)
            ck.read_checkpoint(tmp_path / "p4.pth")
        assert got == []
        real = ck.VideoSwin

        def building(config):
            warnings.warn("Initializing zero-element tensors is a no-op", UserWarning)
            warnings.warn("another thread's warning", UserWarning)
            return real(config)

        monkeypatch.setattr(ck, "VideoSwin", building)
        ck._built(HEADLESS)
    assert [str(w.message) for w in got] == ["another thread's warning"]


def test_threads_hiding_torchs_notes_leave_the_warning_filters_as_they_were(monkeypatch):
    # Was: catch_warnings() saves and restores the process's filter list. Two threads building at
    # once: the first to end restored the list while the other was inside; the other then put
    # its "ignore" back as it ended, and the caller's warnings were ignored for good. Here the
    # first waits for the second to come in before it ends: the two overlap.
    real = ck.VideoSwin
    first_in, second_in, first_done = threading.Event(), threading.Event(), threading.Event()

    def building(config):
        if threading.current_thread().name == "first":
            first_in.set()
            second_in.wait(timeout=5)
        else:
            second_in.set()
            first_done.wait(timeout=5)
        return real(config)

    monkeypatch.setattr(ck, "VideoSwin", building)
    before = list(warnings.filters)
    first = threading.Thread(target=ck._built, args=(HEADLESS,), name="first")
    second = threading.Thread(target=ck._built, args=(HEADLESS,), name="second")
    first.start()
    first_in.wait(timeout=5)
    second.start()
    first.join()
    first_done.set()
    second.join()
    assert warnings.filters == before
    with warnings.catch_warnings(record=True) as got:
        warnings.warn("the caller's own warning", UserWarning)
    assert len(got) == 1


def test_a_checkpoint_replaced_while_it_loads_is_refused_not_hashed_as_another(tmp_path, tiny, monkeypatch):
    # Was: the weights read from one file and the sha256 taken of the one renamed over it meanwhile
    # (`vswin convert` finishing): sidecars named a checkpoint that did not make their features.
    path = ck.save_native(tiny, tmp_path / "m.safetensors")
    other = ck.save_native(VideoSwin(dataclasses.replace(tiny.config, num_classes=3)), tmp_path / "other.safetensors")
    real_build = ck.build_model

    def build_then_replace(*args, **kwargs):
        model = real_build(*args, **kwargs)
        os.replace(other, path)
        return model

    monkeypatch.setattr(ck, "build_model", build_then_replace)
    with pytest.raises(ck.CheckpointError, match="was replaced or changed while it was being loaded; run again"):
        ck.load_checkpoint(path)
    monkeypatch.setattr(ck, "build_model", real_build)
    assert ck.load_checkpoint(path).model.config.num_classes == 3  # the new file, hashed and read as one
