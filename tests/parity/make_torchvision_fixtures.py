"""Produce tests/parity/fixtures/torchvision.json with torchvision's SwinTransformer3d.

Run in a scratch environment that has torchvision (not needed by the tests):

    python3 -m venv /work/scratch/tv-venv
    /work/scratch/tv-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy
    /work/scratch/tv-venv/bin/python tests/parity/make_torchvision_fixtures.py

For every case the script builds the reference model, records its state dict's
(key, shape) list, fills the parameters from weights.py, runs one input from
weights.make_input and stores the logits and the pooled features the head sees.
"""

from __future__ import annotations

import platform
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.models.video.swin_transformer import SwinTransformer3d

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cases as parity_cases  # noqa: E402
import weights as parity_weights  # noqa: E402


def build_reference(config: dict) -> SwinTransformer3d:
    return SwinTransformer3d(
        patch_size=config["patch_size"],
        embed_dim=config["embed_dim"],
        depths=config["depths"],
        num_heads=config["num_heads"],
        window_size=config["window_size"],
        num_classes=config["num_classes"],
    )


def run_case(case: dict, seed: int) -> tuple[dict, dict, dict]:
    model = build_reference(case["config"]).eval()
    keys_and_shapes = parity_weights.fill_generated(model, seed)
    state = model.state_dict()
    for key, _ in keys_and_shapes:  # the buffers we leave to the implementations must agree with the paper
        if key.endswith("relative_position_index"):
            expected = parity_weights.relative_position_index(case["config"]["window_size"])
            assert np.array_equal(state[key].numpy(), expected), key

    input_seed = zlib.crc32(case["name"].encode("utf-8"))
    x = torch.from_numpy(parity_weights.make_input(case["input_shape"], input_seed))
    pooled: list[torch.Tensor] = []
    hook = model.head.register_forward_pre_hook(lambda _m, args: pooled.append(args[0].detach().clone()))
    with torch.inference_mode():
        logits = model(x)
    hook.remove()
    print(
        f"{case['name']}: logits std {logits.std().item():.3f} max|.| {logits.abs().max().item():.3f}, "
        f"features std {pooled[0].std().item():.3f}",
        flush=True,
    )
    model_record, case_record = parity_cases.case_records(seed, keys_and_shapes, state, input_seed, logits, pooled[0])
    return case, model_record, case_record


def main() -> None:
    torch.manual_seed(0)  # only the unused default initialisation depends on it
    header = {
        "reference": "torchvision.models.video.swin_transformer.SwinTransformer3d",
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "generator": parity_weights.generator_settings(),
    }
    results = [run_case(case, parity_weights.BASE_SEED) for case in parity_cases.torchvision_cases()]
    parity_cases.write_fixture(HERE / "fixtures" / "torchvision.json", header, results)


if __name__ == "__main__":
    main()
