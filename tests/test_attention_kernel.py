"""The CPU bfloat16 window-attention kernel (vswin_cli/attention_kernel.py): its numbers, its
build and cache, and the fallback to PyTorch's attention wherever it cannot run.

The reference is PyTorch's float32 attention on the same bf16 inputs; the kernel must be at
least as close to it as PyTorch's own bf16 attention (what it replaces) is. Tests that run the
kernel skip, saying why, on CPUs without AVX-512 BF16 or without a C compiler.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vswin_cli import attention_kernel as kernel
from vswin_cli.model import SHIFT_MASK_VALUE, SwinConfig, VideoSwin

CPUINFO_ZEN4 = "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl avx512_bf16 avx512_vnni\n"
CPUINFO_SKYLAKE = "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl avx512_vnni\n"


@pytest.fixture(autouse=True)
def own_kernel_cache(tmp_path_factory, monkeypatch):
    """Each session builds into its own cache; every test starts from an untried kernel."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    monkeypatch.delenv("VSWIN_EAGER", raising=False)
    kernel.reset()
    yield
    kernel.reset()


def needs_kernel() -> None:
    if not kernel.available():
        pytest.skip(f"the bf16 attention kernel is off here: {kernel.status()}")


def random_case(windows: int, heads: int, n: int, masks: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    qkv = torch.randn(windows, n, 3 * heads * 32, generator=gen).to(torch.bfloat16)
    bias = torch.randn(heads, n, n, generator=gen) * 2
    regions = torch.randint(0, 3, (masks, n), generator=gen)
    shift = torch.where(regions[:, :, None] != regions[:, None, :], SHIFT_MASK_VALUE, 0.0)
    index = torch.randint(0, masks, (windows,), generator=gen, dtype=torch.int32)
    return qkv, bias, shift, index


def sdpa_bf16(qkv: torch.Tensor, heads: int, additive: torch.Tensor) -> torch.Tensor:
    """What the model ran before the kernel: PyTorch's fused attention on bf16 inputs and mask."""
    windows, n, _ = qkv.shape
    q, k, v = qkv.view(windows, n, 3, heads, 32).permute(2, 0, 3, 1, 4).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=additive.to(torch.bfloat16))
    return out.transpose(1, 2).reshape(windows, n, heads * 32)


@pytest.mark.parametrize(
    "cpuinfo,expected", [(CPUINFO_ZEN4, True), (CPUINFO_SKYLAKE, False), ("", False)]
)
def test_kernel_needs_avx512_bf16_in_cpuinfo(cpuinfo, expected):
    assert kernel.cpu_has_avx512_bf16(cpuinfo) is expected


def test_region_bits_set_one_bit_per_masked_key():
    masks = torch.zeros(2, 19, 19)
    masks[0, 3, 17] = SHIFT_MASK_VALUE  # word 1, bit 1
    masks[1, 0, 0] = masks[1, 0, 15] = SHIFT_MASK_VALUE  # word 0, bits 0 and 15
    bits = kernel.region_bits(masks, SHIFT_MASK_VALUE)
    assert bits.shape == (2, 19, 2) and bits.dtype == torch.int16
    words = bits.to(torch.int32) & 0xFFFF  # the int16 words read as the kernel's uint16
    expected = torch.zeros(2, 19, 2, dtype=torch.int32)
    expected[0, 3, 1] = 1 << 1
    expected[1, 0, 0] = (1 << 0) | (1 << 15)
    assert torch.equal(words, expected)
    masks[0, 0, 0] = -5.0  # anything but 0 and the region value: the kernel cannot add it
    assert kernel.region_bits(masks, SHIFT_MASK_VALUE) is None


@pytest.mark.parametrize(
    "windows,heads,n",
    [(6, 3, 392), (3, 2, 37), (4, 1, 16), (2, 2, 17), (3, 1, 1), (2, 4, 98)],
)
def test_kernel_is_as_close_to_float32_as_pytorch_bf16_attention(windows, heads, n):
    needs_kernel()
    qkv, bias, shift, index = random_case(windows, heads, n, masks=3, seed=n)
    additive = bias[None] + shift[index.long()][:, None]
    want = kernel.reference_attention(qkv, heads, 32**-0.5, bias, shift[index.long()])
    bits = kernel.region_bits(shift, SHIFT_MASK_VALUE)
    got = kernel.window_attention(qkv, heads, 32**-0.5, bias, bits, index, SHIFT_MASK_VALUE)
    assert got.shape == (windows, n, heads * 32) and got.dtype == torch.bfloat16
    error = (got.float() - want).abs().max().item()
    pytorch_error = (sdpa_bf16(qkv, heads, additive).float() - want).abs().max().item()
    assert error <= max(pytorch_error, 4e-3), (error, pytorch_error)
    # No bias, no mask: plain softmax attention.
    plain = kernel.window_attention(qkv, heads, 32**-0.5).float()
    assert (plain - kernel.reference_attention(qkv, heads, 32**-0.5)).abs().max().item() <= max(pytorch_error, 4e-3)


def test_kernel_result_does_not_depend_on_the_thread_count(monkeypatch):
    needs_kernel()
    qkv, bias, shift, index = random_case(5, 3, 50, masks=2, seed=3)
    bits = kernel.region_bits(shift, SHIFT_MASK_VALUE)
    results = []
    for threads in (1, 2, 7):
        monkeypatch.setattr(torch, "get_num_threads", lambda threads=threads: threads)
        results.append(kernel.window_attention(qkv, heads=3, scale=32**-0.5, bias=bias, bits=bits, region_index=index, region_value=SHIFT_MASK_VALUE))
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


# Heads of 32 channels in stages 1-2 (the kernel), of 64 and 128 in stages 3-4 (PyTorch's
# attention); 9x50x60 frames give padded and shrunk windows, small grids a shift mask per window.
SMALL = SwinConfig(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 2), window_size=(4, 7, 7), num_classes=12)


@pytest.mark.parametrize("shape", [(2, 3, 16, 112, 112), (1, 3, 9, 50, 60)])
def test_model_bf16_with_the_kernel_stays_within_the_bound_of_float32(shape, monkeypatch):
    needs_kernel()
    torch.manual_seed(0)
    model = VideoSwin(SMALL).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    calls = []
    real = kernel.window_attention
    monkeypatch.setattr(kernel, "window_attention", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    with torch.inference_mode():
        logits32 = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with_kernel = model(x)
            monkeypatch.setattr(kernel, "_state", "off for this test")
            without = model(x)
    assert len(calls) == 4, "the kernel runs the four blocks with 32-channel heads, once"
    error = (with_kernel - logits32).abs().max().item()
    pytorch_error = (without - logits32).abs().max().item()
    assert error <= max(1.5 * pytorch_error, 0.02), (error, pytorch_error)
    assert torch.equal(with_kernel.topk(3).indices, logits32.topk(3).indices)


def fake_compiler(directory: Path, script: str) -> str:
    path = directory / "fake-cc"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_a_failing_compiler_leaves_pytorch_attention_in_place(tmp_path, monkeypatch):
    monkeypatch.setattr(kernel, "cpu_has_avx512_bf16", lambda cpuinfo=None: True)
    monkeypatch.setattr(kernel.sys, "platform", "linux")
    monkeypatch.setattr(kernel.platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("CC", fake_compiler(tmp_path, "echo 'cc: error: unrecognized option -mavx512bf16' >&2; exit 1"))
    assert kernel.available() is False
    assert "could not be built" in kernel.status() and "unrecognized option" in kernel.status()
    # The model still runs in bf16, through PyTorch's attention.
    model = VideoSwin(SMALL).eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(model(torch.randn(1, 3, 8, 64, 64))).all()


def test_no_compiler_and_vswin_eager_turn_it_off(monkeypatch):
    monkeypatch.setattr(kernel, "cpu_has_avx512_bf16", lambda cpuinfo=None: True)
    monkeypatch.setattr(kernel.sys, "platform", "linux")
    monkeypatch.setattr(kernel.platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("CC", "")
    monkeypatch.setenv("PATH", "")
    assert kernel.available() is False and "no C compiler" in kernel.status()
    kernel.reset()
    monkeypatch.setenv("VSWIN_EAGER", "1")
    assert kernel.available() is False and kernel.status() == "VSWIN_EAGER is set"
    kernel.reset()
    monkeypatch.setattr(kernel, "cpu_has_avx512_bf16", lambda cpuinfo=None: False)
    monkeypatch.delenv("VSWIN_EAGER")
    assert kernel.available() is False and "no AVX-512 BF16" in kernel.status()


def test_the_build_is_cached_and_reused(tmp_path, monkeypatch):
    compiler = kernel.find_compiler()
    if compiler is None:
        pytest.skip("no C compiler here")
    first = kernel.build(compiler, tmp_path)
    assert first.exists() and first.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no partial file left behind

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(kernel.subprocess, "run", no_compiling)
    assert kernel.build(compiler, tmp_path) == first


def test_an_unwritable_cache_builds_in_a_temporary_folder(tmp_path, monkeypatch):
    needs_kernel()
    kernel.reset()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setattr(kernel, "cache_dir", lambda: blocker / "kernels")
    assert kernel.available(), kernel.status()
