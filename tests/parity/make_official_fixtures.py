"""Produce tests/parity/fixtures/official.json with the official Video Swin code.

The official repository (https://github.com/SwinTransformer/Video-Swin-Transformer,
commit db018fb) is run as is: its backbone file and I3D head are imported from a
checkout, and only their mmcv / mmaction-registry / timm imports are replaced by
stand-ins that do not take part in inference (registries, a logger, init helpers,
DropPath, which is the identity in eval mode). See README.md for the command line.

    python tests/parity/make_official_fixtures.py --official-src /work/scratch/official

Every case builds SwinTransformer3D (patch_norm=True, as all released configs)
plus I3DHead inside a container whose state dict has the release checkpoints'
key names (``backbone.*``, ``cls_head.fc_cls.*``).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cases as parity_cases  # noqa: E402
import weights as parity_weights  # noqa: E402

OFFICIAL_COMMIT = "db018fb8896251711791386bbd2127562fd8d6a6"


class _Registry:
    """Stand-in for mmcv's Registry: the decorator returns the class unchanged."""

    def register_module(self, *args, **kwargs):
        return (lambda cls: cls) if not args or not isinstance(args[0], type) else args[0]


class _DropPath(nn.Module):
    """timm's DropPath at inference: the identity (the released models are only used in eval)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not self.training, "fixture models run in eval mode only"
        return x


def _module(name: str, package_path: Path | None = None, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    if package_path is not None:
        mod.__path__ = [str(package_path)]
    for key, value in attrs.items():
        setattr(mod, key, value)
    sys.modules[name] = mod
    return mod


def _load_source(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def import_official(src: Path) -> tuple[type, type]:
    """(SwinTransformer3D, I3DHead) imported from an official checkout at ``src``."""
    models_dir = src / "mmaction" / "models"
    _module("timm", src)
    _module("timm.models", src)
    _module("timm.models.layers", DropPath=_DropPath, trunc_normal_=nn.init.trunc_normal_)
    _module("mmcv", src)
    _module("mmcv.runner", load_checkpoint=None)
    _module("mmcv.cnn", normal_init=lambda module, std=0.01, bias=0.0: None)
    _module("mmaction", src / "mmaction")
    _module("mmaction.utils", get_root_logger=lambda *a, **k: None)
    _module("mmaction.core", top_k_accuracy=None)
    _module("mmaction.models", models_dir)
    _module(
        "mmaction.models.builder",
        BACKBONES=_Registry(),
        HEADS=_Registry(),
        build_loss=lambda cfg: nn.Identity(),  # the loss holds no parameters
    )
    _module("mmaction.models.backbones", models_dir / "backbones")
    _module("mmaction.models.heads", models_dir / "heads")
    swin = _load_source("mmaction.models.backbones.swin_transformer", models_dir / "backbones" / "swin_transformer.py")
    _load_source("mmaction.models.heads.base", models_dir / "heads" / "base.py")
    i3d = _load_source("mmaction.models.heads.i3d_head", models_dir / "heads" / "i3d_head.py")
    return swin.SwinTransformer3D, i3d.I3DHead


class OfficialRecognizer(nn.Module):
    """The parts of mmaction's Recognizer3D used at test time, with its attribute names."""

    def __init__(self, backbone: nn.Module, cls_head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.cls_head = cls_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_head(self.backbone(x))


def build_reference(config: dict, backbone_cls: type, head_cls: type) -> OfficialRecognizer:
    backbone = backbone_cls(
        pretrained=None,
        patch_size=tuple(config["patch_size"]),
        embed_dim=config["embed_dim"],
        depths=config["depths"],
        num_heads=config["num_heads"],
        window_size=tuple(config["window_size"]),
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.2,
        patch_norm=True,
    )
    in_channels = config["embed_dim"] * 2 ** (len(config["depths"]) - 1)
    head = head_cls(num_classes=config["num_classes"], in_channels=in_channels, spatial_type="avg", dropout_ratio=0.5)
    return OfficialRecognizer(backbone, head)


def run_model(model: OfficialRecognizer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, pooled features the classifier sees)."""
    pooled: list[torch.Tensor] = []
    hook = model.cls_head.fc_cls.register_forward_pre_hook(lambda _m, args: pooled.append(args[0].detach().clone()))
    with torch.inference_mode():
        logits = model(x)
    hook.remove()
    return logits, pooled[0]


def run_case(case: dict, backbone_cls: type, head_cls: type, seed: int) -> tuple[dict, dict, dict]:
    model = build_reference(case["config"], backbone_cls, head_cls).eval()
    keys_and_shapes = parity_weights.fill_generated(model, seed)
    state = model.state_dict()
    for key, _ in keys_and_shapes:
        if key.endswith("relative_position_index"):
            expected = parity_weights.relative_position_index(case["config"]["window_size"])
            assert np.array_equal(state[key].numpy(), expected), key
    input_seed = zlib.crc32(case["name"].encode("utf-8"))
    x = torch.from_numpy(parity_weights.make_input(case["input_shape"], input_seed))
    logits, pooled = run_model(model, x)
    print(f"{case['name']}: logits std {logits.std().item():.3f}, features std {pooled.std().item():.3f}", flush=True)
    model_record, case_record = parity_cases.case_records(seed, keys_and_shapes, state, input_seed, logits, pooled)
    return case, model_record, case_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-src", type=Path, default=Path("/work/scratch/official"))
    args = parser.parse_args()

    torch.manual_seed(0)  # only the unused default initialisation depends on it
    backbone_cls, head_cls = import_official(args.official_src)
    header = {
        "reference": f"official SwinTransformer3D + I3DHead, SwinTransformer/Video-Swin-Transformer@{OFFICIAL_COMMIT}",
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "generator": parity_weights.generator_settings(),
    }
    results = [
        run_case(case, backbone_cls, head_cls, parity_weights.BASE_SEED) for case in parity_cases.official_cases()
    ]
    parity_cases.write_fixture(HERE / "fixtures" / "official.json", header, results)


if __name__ == "__main__":
    main()
