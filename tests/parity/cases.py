"""The architectures and inputs the parity fixtures cover (shared by the scripts)."""

from __future__ import annotations

import json
from pathlib import Path

# name -> (embed_dim, depths, num_heads); full-size ones are the paper's Swin-T/S/B.
ARCHITECTURES: dict[str, tuple[int, list[int], list[int]]] = {
    "swin-t": (96, [2, 2, 6, 2], [3, 6, 12, 24]),
    "swin-s": (96, [2, 2, 18, 2], [3, 6, 12, 24]),
    "swin-b": (128, [2, 2, 18, 2], [4, 8, 16, 32]),
    # Narrow variants with the real depths, for the odd input shapes.
    "tiny-t": (32, [2, 2, 6, 2], [1, 2, 4, 8]),
    "tiny-s": (32, [2, 2, 18, 2], [1, 2, 4, 8]),
    "tiny-b": (32, [2, 2, 18, 2], [2, 4, 8, 16]),
}

FULL_INPUT = (1, 3, 32, 224, 224)
# Padding in every direction (W=130 is not a multiple of the patch; 25x33 tokens are not
# multiples of 7), a batch of two, and windows that shrink to the feature map (T=4 -> 2 tokens).
ODD_INPUTS = ((2, 3, 18, 100, 130), (1, 3, 4, 64, 64))

WINDOW_877 = (8, 7, 7)
WINDOW_1677 = (16, 7, 7)
FULL_CLASSES = 400
TINY_CLASSES = 7


# Cases run by default stay within the test-time budget (about 40 s on 2 cores); the
# full-width Swin-S/B ones at 32x224x224 take ~15-35 s each on 2 cores and run on request
# (their narrow twins "tiny-s"/"tiny-b", same depths and head layout, always run).
SLOW_MODELS = {"swin-s_w16x7x7", "swin-b_w16x7x7"}


def model_id(arch: str, window: tuple[int, int, int]) -> str:
    return f"{arch}_w{'x'.join(map(str, window))}"


def case_name(arch: str, window: tuple[int, int, int], input_shape: tuple[int, ...]) -> str:
    return f"{model_id(arch, window)}_in{'x'.join(map(str, input_shape))}"


def torchvision_cases() -> list[dict]:
    """Full-size T/S/B at 32x224x224 (window 16x7x7, plus T at 8x7x7), narrow ones at odd shapes."""
    plan = [
        ("swin-t", WINDOW_877, [FULL_INPUT]),
        ("swin-t", WINDOW_1677, [FULL_INPUT]),
        ("swin-s", WINDOW_1677, [FULL_INPUT]),
        ("swin-b", WINDOW_1677, [FULL_INPUT]),
        ("tiny-t", WINDOW_877, list(ODD_INPUTS)),
        ("tiny-t", WINDOW_1677, list(ODD_INPUTS)),
        # Narrow S/B keep the real depths and head layout at the full input size too.
        ("tiny-s", WINDOW_1677, [FULL_INPUT, *ODD_INPUTS]),
        ("tiny-b", WINDOW_1677, [FULL_INPUT, *ODD_INPUTS]),
    ]
    return _expand(plan)


def official_cases() -> list[dict]:
    """Narrow models in the official checkpoint layout, windows 8x7x7 and 16x7x7, odd shapes."""
    plan = [
        ("tiny-t", WINDOW_877, list(ODD_INPUTS)),
        ("tiny-t", WINDOW_1677, list(ODD_INPUTS)),
        ("tiny-b", WINDOW_877, list(ODD_INPUTS)),
        ("tiny-b", WINDOW_1677, list(ODD_INPUTS)),
    ]
    return _expand(plan)


def model_config(arch: str, window: tuple[int, int, int]) -> dict:
    embed_dim, depths, heads = ARCHITECTURES[arch]
    return {
        "arch": arch,
        "embed_dim": embed_dim,
        "depths": list(depths),
        "num_heads": list(heads),
        "window_size": list(window),
        "patch_size": [2, 4, 4],
        "num_classes": FULL_CLASSES if arch.startswith("swin-") else TINY_CLASSES,
    }


def _expand(plan: list[tuple[str, tuple[int, int, int], list[tuple[int, ...]]]]) -> list[dict]:
    """One dict per (model, input): model id and config, input shape, whether it is slow."""
    cases = []
    for arch, window, inputs in plan:
        for input_shape in inputs:
            cases.append(
                {
                    "name": case_name(arch, window, input_shape),
                    "model": model_id(arch, window),
                    "config": model_config(arch, window),
                    "input_shape": list(input_shape),
                    "slow": model_id(arch, window) in SLOW_MODELS,
                }
            )
    return cases


def write_fixture(path: Path, header: dict, results: list[tuple[dict, dict, dict]]) -> None:
    """Write ``header`` plus models and cases as compact JSON.

    ``results`` holds (case, model_record, case_record) triples; models shared by several
    cases are stored once.
    """
    models: dict[str, dict] = {}
    records = []
    for case, model_record, case_record in results:
        models.setdefault(case["model"], {**case["config"], **model_record})
        records.append({"name": case["name"], "model": case["model"], "input_shape": case["input_shape"],
                        "slow": case["slow"], **case_record})
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({**header, "models": models, "cases": records}, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def case_records(seed: int, keys_and_shapes: list, state: dict, input_seed: int, logits, features) -> tuple[dict, dict]:
    """(model record, case record) of one reference run: what a fixture stores, no weights.

    ``state`` maps keys to the reference's tensors; ``logits`` and ``features`` are its
    outputs for the input drawn from ``input_seed``.
    """
    import weights as parity_weights

    model_record = {
        "weight_seed": seed,
        "state_dict": keys_and_shapes,
        "checksums": {k: parity_weights.checksum(state[k].numpy()) for k in parity_weights.checksum_keys(list(state))},
    }
    case_record = {
        "input_seed": input_seed,
        "logits": parity_weights.round_float32(logits.numpy()),
        "features": parity_weights.round_float32(features.numpy()),
    }
    return model_record, case_record
