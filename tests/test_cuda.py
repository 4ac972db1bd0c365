"""The CUDA path keeps the numbers: parity in float32 (TF32 off), the bf16/fp16 bound, the engine.

Every test here needs a CUDA GPU and is skipped, with that reason, where there is none (CI has
none; these ran on an H200, see benchmarks/README.md). References are the same independent ones
the CPU tests use: the torchvision and official fixtures, and float32 on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vswin_cli.checkpoints import model_from_state_dict
from vswin_cli.engine import Engine, RunOptions, resolve_batch_size, resolve_precision
from vswin_cli.inputs import discover
from vswin_cli.loading import load_model
from vswin_cli.model import SwinConfig, VideoSwin

import media

try:  # pytest puts tests/ on sys.path (no tests/__init__.py) ...
    from parity import weights as parity_weights
except ImportError:  # ... or the repository root, when tests/ becomes a package
    from tests.parity import weights as parity_weights

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")

FIXTURES = Path(__file__).parent / "parity" / "fixtures"
TOLERANCE = 1e-4
# Measured on full-size Swin-T (benchmarks/precision.py --device cuda, benchmarks/README.md).
REDUCED_LOGIT_BOUND = {torch.bfloat16: 0.02, torch.float16: 0.005}


@pytest.fixture(autouse=True)
def no_tf32():
    """float32 means float32: TF32 matmuls would move logits by ~1e-3."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _cases() -> list:
    params = []
    for source in ("torchvision", "official"):
        data = json.loads((FIXTURES / f"{source}.json").read_text())
        for case in data["cases"]:  # all of them: full-width S and B take well under a second here
            params.append(pytest.param(data["models"][case["model"]], case, id=f"{source}-{case['name']}"))
    return params


@pytest.mark.parametrize(("record", "case"), _cases())
def test_cuda_float32_matches_reference(record: dict, case: dict) -> None:
    tensors = {k: torch.from_numpy(v) for k, v in parity_weights.make_state_dict(record["state_dict"]).items()}
    model = model_from_state_dict(tensors).cuda()
    x = torch.from_numpy(parity_weights.make_input(case["input_shape"], case["input_seed"])).cuda()
    with torch.inference_mode():
        features = model.forward_features(x)
        logits = model.classify_features(features)
    for actual, expected, what in ((logits, case["logits"], "logits"), (features, case["features"], "features")):
        diff = float(np.abs(actual.float().cpu().numpy() - np.asarray(expected, dtype=np.float32)).max())
        assert diff <= TOLERANCE, f"{case['name']} {what}: max abs diff {diff:.3e} > {TOLERANCE}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_cuda_reduced_precision_within_documented_bound(dtype: torch.dtype) -> None:
    # Swin-T's depths and widths at a smaller input: every stage, shifted windows and padding.
    model = parity_weights.load_generated(VideoSwin(SwinConfig())).cuda()
    x = torch.from_numpy(parity_weights.make_input((2, 3, 16, 112, 112), seed=3)).cuda()
    with torch.inference_mode():
        reference = model(x).float()
        with torch.autocast("cuda", dtype=dtype):
            reduced = model(x)
    assert reduced.dtype == torch.float32, "outputs stay float32 under autocast"
    assert torch.equal(reference.topk(5).indices, reduced.topk(5).indices)
    assert (reduced - reference).abs().max().item() <= REDUCED_LOGIT_BOUND[dtype]


def test_cuda_choices() -> None:
    cuda = torch.device("cuda")
    assert resolve_precision("auto", cuda) == torch.float32
    assert resolve_precision("fp16", cuda) == torch.float16
    assert resolve_precision("bf16", cuda) == torch.bfloat16
    size = resolve_batch_size("auto", cuda)
    assert 1 <= size <= 64


def test_engine_on_cuda_gives_the_cpu_numbers(tmp_path: Path, tiny_checkpoint: Path) -> None:
    for i in range(3):
        media.encode_cv2(tmp_path / f"v{i}.avi", frames=40 + 7 * i, size=(96, 64))
    items = discover([tmp_path]).videos
    model = load_model(str(tiny_checkpoint))
    options = dict(clips=2, crops=3, clip_len=8, frame_interval=2)
    cpu = {o.record.path: o for o in Engine(model, RunOptions(device="cpu", **options)).run(items)}
    gpu = list(Engine(load_model(str(tiny_checkpoint)), RunOptions(device="cuda", batch_size=4, **options)).run(items))
    assert [o.record.path for o in gpu] == [str(item.path) for item in items]
    for outcome in gpu:
        assert outcome.record.status == "ok"
        expected = cpu[outcome.record.path]
        assert np.abs(outcome.scores - expected.scores).max() <= TOLERANCE
        assert np.abs(outcome.features - expected.features).max() <= TOLERANCE
        assert [p.label for p in outcome.record.predictions] == [p.label for p in expected.record.predictions]
