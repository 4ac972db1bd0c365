"""The CPU window-attention kernel (vswin_cli/attention_kernel.py) in float32 and bfloat16: its
numbers, its build and cache, and the fallback to PyTorch's attention wherever it cannot run.

References: float64 attention on the same inputs. In float32 the kernel must be as exact as
PyTorch's float32 attention (the model's 1e-4 parity rests on it; the parity tests run the
model, and so this kernel where it is available, against the official fixtures). In bfloat16 it
must be at least as close as PyTorch's own bf16 attention, which it replaces. Tests that run the
kernel skip, saying why, on CPUs without AVX-512 (BF16) or without a C compiler.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vswin_cli import attention_kernel as kernel
from vswin_cli.model import SHIFT_MASK_VALUE, SwinConfig, VideoSwin

CPUINFO_ZEN4 = "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl avx512_bf16 avx512_vnni\n"
CPUINFO_SKYLAKE = "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl avx512_vnni\n"
CPUINFO_AVX2 = "flags\t\t: fpu sse2 avx2 fma\n"
CPUINFO_AVX2_NO_FMA = "flags\t\t: fpu sse2 avx avx2\n"
CPUINFO_SAPPHIRE_RAPIDS = "flags\t\t: fpu avx2 avx512f avx512bw avx512vl avx512_bf16 amx_bf16 amx_tile amx_int8\n"
DTYPES = [torch.float32, torch.bfloat16]


@pytest.fixture(autouse=True)
def own_kernel_cache(tmp_path_factory, monkeypatch):
    """Each session builds into its own cache; every test starts from an untried kernel."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    monkeypatch.delenv("VSWIN_EAGER", raising=False)
    kernel.reset()
    yield
    kernel.reset()


def needs_kernel(dtype: torch.dtype) -> None:
    if not kernel.available(dtype):
        why = kernel.status(dtype)
        if "differed" in why:  # built and run here, and wrong: a defect, not a reason to skip
            pytest.fail(f"the {dtype} attention kernel failed its first-use check: {why}")
        pytest.skip(f"the {dtype} attention kernel is off here: {why}")


BUILDS = ["native", "avx2"]  # this CPU's build, and the AVX2 one where the CPU also runs AVX2


def use_build(build: str, dtype: torch.dtype, monkeypatch) -> None:
    """Make the kernel come from ``build`` (AVX2: float32 only); skip where this CPU cannot run it."""
    if build == "avx2":
        assert dtype == torch.float32, "the AVX2 build has float32 code only"
        if not {"avx2", "fma"} <= kernel.cpu_flags():
            pytest.skip("this CPU has no AVX2 with FMA")
        monkeypatch.setattr(kernel, "isa", lambda cpuinfo=None: "avx2")
    needs_kernel(dtype)


def random_case(windows: int, heads: int, n: int, masks: int, seed: int, dtype: torch.dtype):
    gen = torch.Generator().manual_seed(seed)
    qkv = torch.randn(windows, n, 3 * heads * 32, generator=gen).to(dtype)
    bias = torch.randn(heads, n, n, generator=gen) * 2
    regions = torch.randint(0, 3, (masks, n), generator=gen)
    shift = torch.where(regions[:, :, None] != regions[:, None, :], SHIFT_MASK_VALUE, 0.0)
    index = torch.randint(0, masks, (windows,), generator=gen, dtype=torch.int32)
    return qkv, bias, shift, index


def pytorch_attention(qkv: torch.Tensor, heads: int, additive: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """What the model runs without the kernel: PyTorch's fused attention, inputs and mask in ``dtype``."""
    windows, n, _ = qkv.shape
    q, k, v = qkv.to(dtype).view(windows, n, 3, heads, 32).permute(2, 0, 3, 1, 4).unbind(0)
    mask = None if additive is None else additive.to(dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=32**-0.5)
    return out.transpose(1, 2).reshape(windows, n, heads * 32)


@pytest.mark.parametrize(
    "cpuinfo,f32,bf16",
    [
        (CPUINFO_ZEN4, True, True),
        (CPUINFO_SKYLAKE, True, False),
        (CPUINFO_SAPPHIRE_RAPIDS, True, False),  # bf16 there: PyTorch's attention, on AMX tiles
        (CPUINFO_AVX2, True, False),  # float32 in the AVX2 build
        (CPUINFO_AVX2_NO_FMA, False, False),
        ("", False, False),
    ],
)
def test_each_precision_needs_its_cpu_features(cpuinfo, f32, bf16):
    expected_build = "avx512" if "avx512f" in cpuinfo else "avx2" if f32 else None
    assert kernel.isa(cpuinfo) == expected_build
    assert kernel.cpu_supports(torch.float32, cpuinfo) is f32
    assert kernel.cpu_supports(torch.bfloat16, cpuinfo) is bf16
    assert kernel.cpu_supports(torch.float16, cpuinfo) is False


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


@pytest.mark.parametrize("dtype,build", [(torch.float32, "native"), (torch.bfloat16, "native"), (torch.float32, "avx2")])
@pytest.mark.parametrize("windows,heads,n", [(6, 3, 392), (3, 2, 37), (4, 1, 16), (2, 2, 17), (3, 1, 1), (2, 4, 98)])
def test_kernel_is_as_exact_as_pytorch_attention(dtype, build, windows, heads, n, monkeypatch):
    use_build(build, dtype, monkeypatch)
    qkv, bias, shift, index = random_case(windows, heads, n, masks=3, seed=n, dtype=dtype)
    additive = bias[None] + shift[index.long()][:, None]
    want = pytorch_attention(qkv, heads, additive, torch.float64)
    bits = kernel.region_bits(shift, SHIFT_MASK_VALUE)
    got = kernel.window_attention(qkv, heads, 32**-0.5, bias, bits, index, SHIFT_MASK_VALUE)
    assert got.shape == (windows, n, heads * 32) and got.dtype == dtype
    error = (got.double() - want).abs().max().item()
    pytorch_error = (pytorch_attention(qkv, heads, additive, dtype).double() - want).abs().max().item()
    if dtype == torch.float32:
        assert error <= max(2 * pytorch_error, 2e-6), (error, pytorch_error)
    else:
        assert error <= max(pytorch_error, 4e-3), (error, pytorch_error)
    # No bias, no mask: plain softmax attention.
    plain = kernel.window_attention(qkv, heads, 32**-0.5).double()
    plain_error = (plain - pytorch_attention(qkv, heads, None, torch.float64)).abs().max().item()
    assert plain_error <= (2e-6 if dtype == torch.float32 else 0.02)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_result_does_not_depend_on_the_thread_count(dtype, monkeypatch):
    needs_kernel(dtype)
    qkv, bias, shift, index = random_case(5, 3, 50, masks=2, seed=3, dtype=dtype)
    bits = kernel.region_bits(shift, SHIFT_MASK_VALUE)
    results = []
    for threads in (1, 2, 7):
        monkeypatch.setattr(torch, "get_num_threads", lambda threads=threads: threads)
        results.append(kernel.window_attention(qkv, 3, 32**-0.5, bias, bits, index, SHIFT_MASK_VALUE))
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])



@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_on_pytorch_openmp_threads_gives_what_its_own_threads_give(dtype, monkeypatch):
    needs_kernel(dtype)
    if "parallel backend: OpenMP" in torch.__config__.parallel_info():
        # PyPI's Linux wheels: the kernel must find the runtime and run on PyTorch's threads.
        assert Path(kernel.openmp_runtime()).name.startswith(("libgomp", "libiomp", "libomp"))
        assert kernel.runs_on_pytorch_threads()
    qkv, bias, shift, index = random_case(7, 3, 98, masks=2, seed=4, dtype=dtype)
    bits = kernel.region_bits(shift, SHIFT_MASK_VALUE)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    pooled = kernel.window_attention(qkv, 3, 32**-0.5, bias, bits, index, SHIFT_MASK_VALUE)
    monkeypatch.setattr(kernel, "_parallel", None)  # as where no OpenMP runtime is found
    own = kernel.window_attention(qkv, 3, 32**-0.5, bias, bits, index, SHIFT_MASK_VALUE)
    assert torch.equal(pooled, own)


def maps_line(path: str) -> str:
    return f"7f0000000000-7f0000001000 r-xp 00000000 08:01 1234    {path}"


def test_the_openmp_runtime_is_the_one_pytorch_ships_or_the_only_one_loaded(monkeypatch):
    torch_lib = Path(torch.__file__).resolve().parent / "lib"
    ours, system, llvm = str(torch_lib / "libgomp-a34b3233.so.1"), "/usr/lib/libgomp.so.1", "/opt/libomp.so"
    monkeypatch.setattr(torch.__config__, "parallel_info", lambda: "ATen parallel backend: OpenMP\n")
    assert kernel.openmp_runtime("\n".join([maps_line(system), maps_line(ours), maps_line(ours)])) == ours
    assert kernel.openmp_runtime("\n".join([maps_line("/usr/lib/libc.so.6"), maps_line(system)])) == system
    assert kernel.openmp_runtime("\n".join([maps_line(system), maps_line(llvm)])) is None  # which one?
    assert kernel.openmp_runtime(maps_line("/usr/lib/libc.so.6") + "\n7f0-7f1 rw-p 00000000 00:00 0\n") is None
    monkeypatch.setattr(torch.__config__, "parallel_info", lambda: "ATen parallel backend: native thread pool\n")
    assert kernel.openmp_runtime(maps_line(ours)) is None


# Heads of 32 channels in stages 1-2 (the kernel), of 64 and 128 in stages 3-4 (PyTorch's
# attention); 9x50x60 frames give padded and shrunk windows, small grids a shift mask per window.
SMALL = SwinConfig(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 2), window_size=(4, 7, 7), num_classes=12)


@pytest.fixture(scope="module")
def small_model() -> VideoSwin:
    torch.manual_seed(0)
    model = VideoSwin(SMALL).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("shape", [(2, 3, 16, 112, 112), (1, 3, 9, 50, 60)])
def test_model_with_the_kernel_keeps_float32_exact_and_bf16_within_its_bound(small_model, shape, build, monkeypatch):
    use_build(build, torch.float32, monkeypatch)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    calls = []
    real = kernel.window_attention
    monkeypatch.setattr(kernel, "window_attention", lambda *a, **k: calls.append(a[0].dtype) or real(*a, **k))
    with torch.inference_mode():
        with_kernel = small_model(x)
        assert calls == [torch.float32] * 4, "the kernel runs the four blocks with 32-channel heads, once"
        with_bf16 = None
        if kernel.available(torch.bfloat16):  # (its first-use check calls the kernel too)
            calls.clear()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                with_bf16 = small_model(x)
            assert calls == [torch.bfloat16] * 4
        # Off until the fixture's reset after this test.
        kernel._states[torch.float32] = kernel._states[torch.bfloat16] = "off for this test"
        without = small_model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            without_bf16 = small_model(x)
    assert (with_kernel - without).abs().max().item() < 1e-5
    if with_bf16 is not None:
        error = (with_bf16 - without).abs().max().item()
        pytorch_error = (without_bf16 - without).abs().max().item()
        assert error <= max(1.5 * pytorch_error, 0.02), (error, pytorch_error)
        assert torch.equal(with_bf16.topk(3).indices, without.topk(3).indices)


def fake_compiler(directory: Path, script: str) -> str:
    path = directory / "fake-cc"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def pretend_avx512(monkeypatch) -> None:
    """Pass the CPU and OS checks (nothing here runs the kernel: its build fails or is absent)."""
    monkeypatch.setattr(kernel, "cpu_supports", lambda dtype, cpuinfo=None: True)
    monkeypatch.setattr(kernel, "isa", lambda cpuinfo=None: "avx512")
    monkeypatch.setattr(kernel.sys, "platform", "linux")
    monkeypatch.setattr(kernel.platform, "machine", lambda: "x86_64")


def test_a_failing_compiler_leaves_pytorch_attention_in_place(tmp_path, monkeypatch):
    pretend_avx512(monkeypatch)
    monkeypatch.setenv("CC", fake_compiler(tmp_path, "echo 'cc: error: unrecognized option -mavx512bf16' >&2; exit 1"))
    for dtype in DTYPES:
        assert kernel.available(dtype) is False
        assert "could not be built" in kernel.status(dtype) and "unrecognized option" in kernel.status(dtype)
    # The model still runs, through PyTorch's attention.
    model = VideoSwin(SMALL).eval()
    with torch.inference_mode():
        assert torch.isfinite(model(torch.randn(1, 3, 8, 64, 64))).all()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.isfinite(model(torch.randn(1, 3, 8, 64, 64))).all()


def test_a_compiler_without_bf16_still_builds_the_float32_kernel(tmp_path, monkeypatch):
    needs_kernel(torch.float32)
    real = kernel.find_compiler()
    kernel.reset()
    old_gcc = fake_compiler(
        tmp_path,
        'for a in "$@"; do [ "$a" = "-mavx512bf16" ] && '
        "{ echo \"cc1: error: unrecognized command-line option '-mavx512bf16'\" >&2; exit 1; }; done\n"
        f'exec "{real}" "$@"',
    )
    monkeypatch.setenv("CC", old_gcc)
    assert kernel.available(torch.float32), kernel.status(torch.float32)
    if kernel.cpu_supports(torch.bfloat16):
        assert kernel.available(torch.bfloat16) is False
        assert "-mavx512bf16" in kernel.status(torch.bfloat16)


def test_no_compiler_vswin_eager_and_other_cpus_turn_it_off(monkeypatch):
    pretend_avx512(monkeypatch)
    monkeypatch.setenv("CC", "")
    monkeypatch.setenv("PATH", "")
    assert kernel.available(torch.float32) is False and "no C compiler" in kernel.status(torch.float32)
    kernel.reset()
    monkeypatch.setenv("VSWIN_EAGER", "1")
    assert kernel.available(torch.float32) is False and kernel.status(torch.float32) == "VSWIN_EAGER is set"
    kernel.reset()
    monkeypatch.delenv("VSWIN_EAGER")
    monkeypatch.setattr(kernel, "cpu_supports", lambda dtype, cpuinfo=None: False)
    monkeypatch.setattr(kernel, "isa", lambda cpuinfo=None: "avx2")
    assert kernel.available(torch.bfloat16) is False and "lacks AVX-512 BF16" in kernel.status(torch.bfloat16)
    assert kernel.available(torch.float16) is False
    kernel.reset()
    monkeypatch.setattr(kernel, "isa", lambda cpuinfo=None: None)
    assert kernel.available(torch.float32) is False
    assert kernel.status(torch.float32) == "this CPU has neither AVX-512 nor AVX2 with FMA"


def test_the_build_is_cached_and_reused_and_unused_builds_are_pruned(tmp_path, monkeypatch):
    compiler = kernel.find_compiler()
    if compiler is None:
        pytest.skip("no C compiler here")
    day = 86400
    now = time.time()

    def planted(name: str, age: float) -> Path:
        path = tmp_path / name
        path.write_bytes(b"\0")
        os.utime(path, (now - age, now - age))
        return path

    # What earlier versions and runs left: a build unused for 31 days, one used yesterday, an
    # interrupted build from two hours ago, one in progress now, and a file that is not ours.
    unused = planted("window_attention-0123456789abcdef.so", 31 * day)
    recent = planted("window_attention-fedcba9876543210.so", 1 * day)
    interrupted = planted("tmpab12cd.so.partial", 2 * 3600)
    in_progress = planted("tmpef34gh.so.partial", 60)
    not_ours = planted("notes.txt", 400 * day)

    first = kernel.build(compiler, tmp_path)
    assert first.exists() and first.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(p.name for p in (first, recent, in_progress, not_ours)), first.name + ".sha256"]
    )  # no partial file of this build left behind either
    assert not unused.exists() and not interrupted.exists()

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again")

    # Reused as it is; using it renews its time, so a build in use is never pruned as unused.
    os.utime(first, (now - 40 * day, now - 40 * day))
    monkeypatch.setattr(kernel.subprocess, "run", no_compiling)
    assert kernel.build(compiler, tmp_path) == first
    assert first.stat().st_mtime > now - day


@pytest.mark.parametrize("damage", ["cut", "overwritten", "no digest"])
def test_a_damaged_cached_library_is_built_again_not_loaded(tmp_path, damage):
    # Was: a library cut short (a full disk, a crash mid-copy) or damaged was loaded as it was,
    # and every later run died of a bus error or an illegal instruction.
    import subprocess
    import sys

    needs_kernel(torch.float32)
    compiler = kernel.find_compiler()
    cache = tmp_path / "cache"
    library = kernel.build(compiler, cache / "vswin" / "kernels", kernel.isa())
    good = library.read_bytes()
    if damage == "cut":
        library.write_bytes(good[:20480])
    elif damage == "overwritten":
        library.write_bytes(good[:12000] + b"\xff\xff\xff\xff" + good[12004:])
    else:
        library.with_name(library.name + ".sha256").unlink()
    check = ("import torch; from vswin_cli import attention_kernel as k; "
             "print(k.available(torch.float32), k.status(torch.float32))")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("True"), done.stdout
    assert kernel._intact(library) and len(library.read_bytes()) == len(good)  # built again


def test_an_unwritable_cache_builds_in_a_temporary_folder_and_removes_it(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(kernel.tempfile, "tempdir", str(scratch))
    needs_kernel(torch.float32)
    kernel.reset()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setattr(kernel, "cache_dir", lambda: blocker / "kernels")
    assert kernel.available(torch.float32), kernel.status(torch.float32)
    # The library stays loaded; the folder it was built in does not stay behind, run after run.
    assert list(scratch.iterdir()) == []
