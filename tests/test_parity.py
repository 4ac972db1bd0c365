"""Our Video Swin gives the reference implementations' logits and pooled features.

The fixtures under tests/parity/fixtures/ hold, per case, the reference model's
state-dict key list, the seeds and the reference outputs; the weights themselves
are regenerated here by tests/parity/weights.py (see tests/parity/README.md).

- torchvision.json: torchvision's SwinTransformer3d (key layout ``features.*``/``head.*``).
- official.json: the official SwinTransformer3D + I3DHead (``backbone.*``/``cls_head.fc_cls.*``).

Full-width Swin-S and Swin-B at 32x224x224 take ~15 s each on 2 cores; they run
when VSWIN_FULL_PARITY=1 is set. Their narrow twins (same depths and head layout,
embed dim 32) run always, at the same input size.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from vswin_cli.checkpoints import model_from_state_dict

try:  # pytest puts tests/ on sys.path (no tests/__init__.py) ...
    from parity import weights as parity_weights
except ImportError:  # ... or the repository root, when tests/ becomes a package
    from tests.parity import weights as parity_weights

FIXTURES = Path(__file__).parent / "parity" / "fixtures"
TOLERANCE = 1e-4
RUN_SLOW = os.environ.get("VSWIN_FULL_PARITY") == "1"


def _load(source: str) -> dict:
    return json.loads((FIXTURES / f"{source}.json").read_text())


FIXTURE_DATA = {source: _load(source) for source in ("torchvision", "official")}


def _case_params(source: str) -> list:
    params = []
    for case in FIXTURE_DATA[source]["cases"]:
        marks = [] if RUN_SLOW or not case["slow"] else [pytest.mark.skip(reason="set VSWIN_FULL_PARITY=1")]
        params.append(pytest.param(source, case, id=f"{source}-{case['name']}", marks=marks))
    return params


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    """The budget assumes 2 CPU threads; restore the caller's setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _state_dict(model_record: dict, with_buffers: bool = False) -> dict[str, torch.Tensor]:
    """The reference's state dict rebuilt from the generator, buffers left out unless asked."""
    tensors = {k: torch.from_numpy(v) for k, v in parity_weights.make_state_dict(model_record["state_dict"]).items()}
    if not with_buffers:
        return tensors
    ordered: dict[str, torch.Tensor] = {}
    for key, shape in model_record["state_dict"]:
        if key in tensors:
            ordered[key] = tensors[key]
        elif key.endswith("relative_position_index"):
            index = parity_weights.relative_position_index(model_record["window_size"])
            assert list(index.shape) == shape, key
            ordered[key] = torch.from_numpy(index).to(torch.int64)
        else:
            raise AssertionError(f"fixture lists a buffer the test cannot rebuild: {key}")
    return ordered


@lru_cache(maxsize=2)
def _loaded_model(source: str, model_id: str) -> torch.nn.Module:
    record = FIXTURE_DATA[source]["models"][model_id]
    return model_from_state_dict(_state_dict(record))


def _head_linear(model: torch.nn.Module, num_classes: int) -> torch.nn.Linear | None:
    """The classifier: the last Linear producing ``num_classes`` outputs."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == num_classes]
    return linears[-1] if linears else None


def _logits_and_features(model: torch.nn.Module, x: torch.Tensor, num_classes: int) -> tuple:
    """Logits from model(x); pooled features from the head's input in the same pass when
    the head is an nn.Linear (one forward for the big cases), else from forward_features."""
    seen: list[torch.Tensor] = []
    head = _head_linear(model, num_classes)
    hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) if head is not None else None
    try:
        with torch.inference_mode():
            logits = model(x)
            features = seen[-1] if seen else model.forward_features(x)
    finally:
        if hook is not None:
            hook.remove()
    return logits, features


def _assert_close(actual: torch.Tensor, expected: list, what: str) -> None:
    expected_array = np.asarray(expected, dtype=np.float32)
    actual_array = actual.detach().float().cpu().numpy()
    assert actual_array.shape == expected_array.shape, f"{what}: shape {actual_array.shape} != {expected_array.shape}"
    diff = float(np.abs(actual_array - expected_array).max())
    assert diff <= TOLERANCE, f"{what}: max abs diff {diff:.3e} > {TOLERANCE}"


def _input(case: dict) -> torch.Tensor:
    return torch.from_numpy(parity_weights.make_input(case["input_shape"], case["input_seed"]))


@pytest.mark.parametrize(
    ("source", "model_id"),
    [(source, model_id) for source, data in FIXTURE_DATA.items() for model_id in data["models"]],
)
def test_generator_reproduces_fixture_weights(source: str, model_id: str) -> None:
    # The fixtures were computed from these exact numbers; a numpy change must not move them silently.
    record = FIXTURE_DATA[source]["models"][model_id]
    shapes = {key: shape for key, shape in record["state_dict"]}
    for key, expected in record["checksums"].items():
        tensor = parity_weights.tensor_for(key, shapes[key], record["weight_seed"])
        assert parity_weights.checksum(tensor) == pytest.approx(expected, rel=1e-9, abs=1e-9), key


@pytest.mark.parametrize(("source", "case"), _case_params("torchvision") + _case_params("official"))
def test_logits_and_pooled_features_match_reference(source: str, case: dict) -> None:
    record = FIXTURE_DATA[source]["models"][case["model"]]
    model = _loaded_model(source, case["model"])
    logits, features = _logits_and_features(model, _input(case), record["num_classes"])
    _assert_close(logits, case["logits"], f"{case['name']} logits")
    _assert_close(features, case["features"], f"{case['name']} pooled features")


@pytest.mark.parametrize(
    ("source", "case_name"),
    [("torchvision", "tiny-t_w8x7x7_in1x3x4x64x64"), ("official", "tiny-b_w16x7x7_in2x3x18x100x130")],
)
def test_forward_features_is_what_the_head_sees(source: str, case_name: str) -> None:
    case = next(c for c in FIXTURE_DATA[source]["cases"] if c["name"] == case_name)
    model = _loaded_model(source, case["model"])
    with torch.inference_mode():
        features = model.forward_features(_input(case))
    _assert_close(features, case["features"], f"{case_name} forward_features")


@pytest.mark.parametrize(
    ("source", "case_name"),
    [("torchvision", "tiny-t_w16x7x7_in1x3x4x64x64"), ("official", "tiny-t_w8x7x7_in2x3x18x100x130")],
)
def test_checkpoint_with_buffers_and_wrapper_loads_the_same(source: str, case_name: str) -> None:
    # Released checkpoints carry relative_position_index buffers; official ones sit under "state_dict".
    case = next(c for c in FIXTURE_DATA[source]["cases"] if c["name"] == case_name)
    record = FIXTURE_DATA[source]["models"][case["model"]]
    state_dict = _state_dict(record, with_buffers=True)
    model = model_from_state_dict({"state_dict": state_dict} if source == "official" else state_dict)
    assert not model.training
    logits, features = _logits_and_features(model, _input(case), record["num_classes"])
    _assert_close(logits, case["logits"], f"{case_name} logits (with buffers)")
    _assert_close(features, case["features"], f"{case_name} pooled features (with buffers)")
