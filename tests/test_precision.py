"""The fast paths keep the numbers: window layouts, fused kernels, reduced precision, and the
``--precision`` / ``--batch-size`` choices.

References are independent of the code under test: layouts are checked against the plain
roll + window partition and the official-style shift mask (``shift_region_mask``, itself
checked against the official code by the parity fixtures); fused kernels against the plain
PyTorch ops; bfloat16 against float32 with the bound documented in benchmarks/README.md
(measured by benchmarks/precision.py on full-size Swin-T).
"""

from __future__ import annotations

import pytest
import torch

from vswin_cli import model as vswin_model
from vswin_cli.engine import resolve_batch_size, resolve_precision
from vswin_cli.errors import VswinError
from vswin_cli.model import (
    SwinConfig,
    VideoSwin,
    effective_window,
    shift_region_mask,
    slot_of_token,
    window_layout,
    window_partition,
)

try:  # pytest puts tests/ on sys.path (no tests/__init__.py) ...
    from parity import weights as parity_weights
except ImportError:  # ... or the repository root, when tests/ becomes a package
    from tests.parity import weights as parity_weights

# The documented bound (benchmarks/README.md): logits within 0.02 of float32, hence every
# probability within exp(2 * 0.02) - 1 ~ 4% of its float32 value; top-5 identical.
BF16_LOGIT_BOUND = 0.02
BF16_RELATIVE_PROB_BOUND = 0.041

CPUINFO_WITH_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
CPUINFO_WITHOUT = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
CPUINFO_AMX = "flags\t\t: fpu avx512f amx_tile amx_bf16 amx_int8\n"


# --- window layouts ---------------------------------------------------------------------------


LAYOUT_CASES = [
    # (batch, feature size, window, shift): the 224 input's first stages (grouped by pattern),
    # small grids (one mask per window), padding, and windows shrunk to the input.
    (1, (16, 56, 56), (8, 7, 7), (4, 3, 3)),
    (2, (8, 28, 28), (8, 7, 7), (0, 3, 3)),
    (3, (16, 14, 14), (8, 7, 7), (4, 3, 3)),
    (2, (9, 25, 33), (8, 7, 7), (4, 3, 3)),
    (1, (5, 12, 10), (4, 5, 5), (2, 2, 2)),
    (2, (2, 16, 16), (8, 7, 7), (4, 3, 3)),
]


def _reference_slots(batch: int, size: tuple[int, int, int], window, shift) -> tuple[torch.Tensor, torch.Tensor]:
    """(windows, N) token ids (-1 for padding) and the (nW, N, N) mask, the plain way: pad, roll, partition."""
    window, shift = effective_window(size, window, shift)
    d, h, w = size
    ids = torch.arange(batch * d * h * w, dtype=torch.float64).view(batch, d, h, w, 1)
    padded = [-(-s // wn) * wn for s, wn in zip(size, window)]
    ids = torch.nn.functional.pad(ids, (0, 0, 0, padded[2] - w, 0, padded[1] - h, 0, padded[0] - d), value=-1)
    if any(shift):
        ids = torch.roll(ids, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
    windows = window_partition(ids, window).squeeze(-1).long()  # (batch * nW, N), batch-major
    mask = shift_region_mask(tuple(padded), window, shift) if any(shift) else None
    return windows, mask


@pytest.mark.parametrize("batch,size,window,shift", LAYOUT_CASES)
def test_window_layout_holds_the_rolled_partitioned_tokens_and_their_masks(batch, size, window, shift):
    window, shift = effective_window(size, window, shift)
    layout = window_layout(batch, size, window, shift)
    expected, expected_mask = _reference_slots(batch, size, window, shift)
    n = expected.shape[1]
    got = torch.where(layout.real, layout.tokens, -1).view(-1, n)
    # Every reference window appears once, with its tokens in the same order.
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, expected.tolist()))
    num_windows = expected.shape[0] // batch
    position = {tuple(row): i for i, row in enumerate(expected.tolist())}
    covered = 0
    for first, end, mask_first, mask_end in layout.groups:
        for slot_window in range(first, end):
            reference_window = position[tuple(got[slot_window].tolist())]
            if mask_first < 0:
                assert expected_mask is None or not expected_mask[reference_window % num_windows].any()
            else:
                masks = layout.shift_masks[mask_first:mask_end]
                used = masks[0] if masks.shape[0] == 1 else masks[slot_window - first]
                assert torch.equal(used, expected_mask[reference_window % num_windows])
            covered += 1
    assert covered == expected.shape[0]


def test_slot_of_token_inverts_the_layout():
    layout = window_layout(2, (9, 25, 33), (8, 7, 7), (4, 3, 3))
    slots = slot_of_token(layout, 2 * 9 * 25 * 33)
    assert torch.equal(layout.tokens[slots], torch.arange(2 * 9 * 25 * 33))
    assert bool(layout.real[slots].all())


# --- fused kernels and reduced precision --------------------------------------------------------

NARROW = SwinConfig(16, (2, 2, 2, 2), (2, 2, 4, 4), (8, 7, 7), num_classes=10)


@pytest.fixture(scope="module")
def narrow() -> VideoSwin:
    torch.manual_seed(0)
    model = VideoSwin(NARROW)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


@pytest.mark.skipif(not vswin_model.fused_cpu_linear_available(), reason="no oneDNN fused linear ops here")
def test_fused_cpu_kernels_give_the_plain_ops_results(narrow, monkeypatch):
    x = torch.randn(2, 3, 16, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        fused = narrow(x)
        monkeypatch.setattr(vswin_model, "_FUSED_CPU", False)
        plain = narrow(x)
    assert (fused - plain).abs().max().item() < 1e-5


def test_autocast_follows_weight_updates(narrow):
    """Reduced-precision weights are cast once and cached; changing the weights must not reuse them."""
    x = torch.randn(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(2))
    model, fresh = VideoSwin(NARROW), VideoSwin(NARROW)
    model.load_state_dict(narrow.state_dict())
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(x)
    with torch.no_grad():
        model.layers[0].blocks[0].mlp.fc2.weight.mul_(-1.0)
        fresh.load_state_dict(model.state_dict())
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        after = model(x)
        expected = fresh(x)
    assert not torch.allclose(before, after, atol=1e-3)
    assert torch.equal(after, expected)
    assert after.dtype == torch.float32  # logits stay float32 under autocast


@pytest.fixture(scope="module")
def swin_t_generated() -> VideoSwin:
    """Full-size Swin-T with the parity generator's weights (what the bound was measured on)."""
    return parity_weights.load_generated(vswin_model.swin_t())


def test_bf16_keeps_top5_and_the_documented_bound(swin_t_generated):
    # A smaller clip than a real view keeps the test fast; the model is the full-size one.
    x = torch.from_numpy(parity_weights.make_input((1, 3, 16, 112, 112), seed=7))
    with torch.inference_mode():
        logits32 = swin_t_generated(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits16 = swin_t_generated(x)
    p32, p16 = torch.softmax(logits32, -1), torch.softmax(logits16, -1)
    assert torch.equal(p32.topk(5).indices, p16.topk(5).indices)
    assert (logits16 - logits32).abs().max().item() <= BF16_LOGIT_BOUND
    assert ((p16 - p32).abs() / p32).max().item() <= BF16_RELATIVE_PROB_BOUND


# --- --precision and --batch-size -------------------------------------------------------------


@pytest.mark.parametrize(
    "cpuinfo,expected",
    [(CPUINFO_WITH_BF16, True), (CPUINFO_AMX, True), (CPUINFO_WITHOUT, False), ("", False)],
)
def test_cpu_bf16_units_are_read_from_cpuinfo_flags(cpuinfo, expected):
    assert vswin_model.cpu_supports_bf16(cpuinfo) is expected


def test_auto_precision_stays_float32_even_with_bf16_units(monkeypatch):
    # bfloat16 moves probabilities by up to 4% (relative): more than the 1e-4 parity promise.
    for supports in (True, False):
        monkeypatch.setattr(vswin_model, "cpu_supports_bf16", lambda: supports)
        assert resolve_precision("auto", torch.device("cpu")) == torch.float32
    assert resolve_precision("auto", torch.device("cuda")) == torch.float32
    assert resolve_precision("auto", torch.device("mps")) == torch.float32


def test_explicit_precision_is_obeyed_and_fp16_on_cpu_is_a_usage_error():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == torch.float32
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    assert resolve_precision("fp16", torch.device("cuda")) == torch.float16
    with pytest.raises(VswinError, match="fp16 needs a GPU"):
        resolve_precision("fp16", cpu)


def test_batch_size_auto(monkeypatch):
    assert resolve_batch_size(3, torch.device("cpu")) == 3
    assert resolve_batch_size("auto", torch.device("cpu")) == 1
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 * gib, 80 * gib))
    big = resolve_batch_size("auto", torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (6 * gib, 8 * gib))
    small = resolve_batch_size("auto", torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (gib // 10, 8 * gib))
    tiny = resolve_batch_size("auto", torch.device("cuda"))
    # Half the free memory at 768 MiB per view: 80 GiB -> 53 views, 6 GiB -> 4, nearly full -> 1.
    assert (big, small, tiny) == (53, 4, 1)
