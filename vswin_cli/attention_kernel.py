"""Window attention in bfloat16 on CPUs with AVX-512 BF16: a small C kernel, built here on first use.

PyTorch's CPU attention (and oneDNN's bf16 batched matmuls) runs Swin's shapes, 392-token
windows with 32-dim heads, at a sixth of the bf16 matmul rate on CPUs without AMX, so attention
took over half of a bf16 forward. ``kernels/window_attention_bf16.c`` does one (window, head) at a
time in cache with the ``vdpbf16ps`` instruction; see benchmarks/README.md for the figures.

The kernel is compiled with the C compiler at hand (``$CC``, ``cc``, ``gcc`` or ``clang``) into
``$XDG_CACHE_HOME/vswin/kernels`` (``~/.cache/...``) the first time a bf16 forward runs, then
checked once against PyTorch's attention on small inputs. Where any of this is not possible (no
compiler, another CPU or OS, the check fails, ``VSWIN_EAGER=1``) :func:`available` is False and
the model uses ``scaled_dot_product_attention`` as before: the kernel only ever makes bf16 faster.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

HEAD_DIM = 32
SOURCE = Path(__file__).with_name("kernels") / "window_attention_bf16.c"
FLAGS = ("-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16", "-fPIC", "-shared", "-pthread")
# Largest difference from float32 attention the first-use check accepts; the kernel measures
# ~0.01 on unit-variance inputs (its probabilities are rounded to bfloat16, as PyTorch's are).
CHECK_TOLERANCE = 0.05

_lock = threading.Lock()
_function: ctypes._CFuncPtr | None = None  # type: ignore[name-defined]
_state: str | None = None  # None: not tried yet; "ok"; otherwise why it is off


def cpu_has_avx512_bf16(cpuinfo: str | None = None) -> bool:
    """Whether /proc/cpuinfo lists the AVX-512 features the kernel uses (Linux only)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return {"avx512f", "avx512bw", "avx512vl", "avx512_bf16"} <= flags
    return False


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "vswin" / "kernels"


def find_compiler() -> str | None:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def build(compiler: str, directory: Path) -> Path:
    """The compiled kernel in ``directory``, compiling it unless this source and compiler's build is there.

    Raises RuntimeError with the compiler's message when it fails. Written to a temporary name
    and renamed, so concurrent first runs never load a half-written library.
    """
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + compiler.encode() + " ".join(FLAGS).encode()).hexdigest()[:16]
    target = directory / f"window_attention_bf16-{key}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=directory, suffix=".so.partial")
    os.close(handle)
    try:
        result = subprocess.run(
            [compiler, *FLAGS, "-o", partial, str(SOURCE)], capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"{compiler} exited with {result.returncode}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def _load(path: Path) -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    function = ctypes.CDLL(str(path)).vswin_window_attention_bf16
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_float] + [ctypes.c_int64] * 3 + [ctypes.c_float, ctypes.c_int]
    return function


def _why_unavailable() -> str | None:
    if os.environ.get("VSWIN_EAGER", "") not in ("", "0"):
        return "VSWIN_EAGER is set"
    if not sys.platform.startswith("linux") or platform.machine().lower() not in ("x86_64", "amd64"):
        return "not Linux on x86-64"
    if not cpu_has_avx512_bf16():
        return "this CPU has no AVX-512 BF16"
    return None


def status() -> str:
    """'ok' when the kernel is in use for bf16 attention, otherwise why not (tries it once)."""
    available()
    return _state or "not tried"


def available() -> bool:
    """Whether bf16 window attention runs in the kernel here; builds and checks it on the first call."""
    global _function, _state
    if _state is not None:
        return _state == "ok"
    with _lock:
        if _state is not None:
            return _state == "ok"
        why = _why_unavailable()
        compiler = find_compiler() if why is None else None
        if why is None and compiler is None:
            why = "no C compiler (cc, gcc, clang or $CC)"
        if why is None:
            try:
                try:
                    path = build(compiler, cache_dir())  # type: ignore[arg-type]
                except OSError:  # the cache is not writable: build in a temporary folder
                    path = build(compiler, Path(tempfile.mkdtemp(prefix="vswin-kernels-")))
                _function = _load(path)
                why = None if _self_check() else "its result differed from PyTorch's attention"
            except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as error:
                why = f"it could not be built or loaded ({error})"
        _state = "ok" if why is None else why
        if why is not None:
            _function = None
        return _state == "ok"


def reset() -> None:
    """Forget the first-use result (tests; after changing VSWIN_EAGER or $CC)."""
    global _function, _state
    with _lock:
        _function, _state = None, None


def region_bits(shift_masks: Tensor, region_value: float) -> Tensor | None:
    """(M, N, ceil(N / 16)) uint16 words, bit j % 16 of word j // 16 set where the mask adds ``region_value``.

    None when a mask holds anything but 0 and ``region_value`` (the kernel adds only that).
    """
    masks = shift_masks.detach().to("cpu", torch.float32).reshape(-1, *shift_masks.shape[-2:])
    hit = masks == region_value
    if not bool((hit | (masks == 0)).all()):
        return None
    m, n, _ = hit.shape
    words = -(-n // 16)
    padded = np.zeros((m, n, words * 16), dtype=np.uint8)
    padded[..., :n] = hit.numpy()
    packed = np.packbits(padded, axis=-1, bitorder="little").view("<u2")  # 16 keys per word, key 0 in bit 0
    return torch.from_numpy(packed.astype(np.int16, copy=False).copy()).view(m, n, words)


def window_attention(
    qkv: Tensor,
    heads: int,
    scale: float,
    bias: Tensor | None = None,
    bits: Tensor | None = None,
    region_index: Tensor | None = None,
    region_value: float = 0.0,
) -> Tensor:
    """softmax(q k^T * scale + bias + shift mask) v for every window and head, in bfloat16.

    ``qkv`` (windows, N, 3 * heads * 32) bfloat16 as the qkv linear makes it; ``bias`` (heads, N,
    N) float32; ``bits`` from :func:`region_bits` with ``region_index`` (windows,) int32 naming
    each window's mask. Returns (windows, N, heads * 32) bfloat16. Call only when
    :func:`available` is True.
    """
    windows, n, width = qkv.shape
    if qkv.dtype != torch.bfloat16 or width != 3 * heads * HEAD_DIM or not qkv.is_contiguous():
        raise ValueError("window_attention takes contiguous bfloat16 (windows, N, 3 * heads * 32)")
    out = torch.empty(windows, n, heads * HEAD_DIM, dtype=torch.bfloat16)
    if bias is not None:
        bias = bias.to(torch.float32).reshape(heads, n, n).contiguous()
    if bits is not None:
        if region_index is None:
            raise ValueError("bits need region_index")
        bits = bits.contiguous()
        region_index = region_index.to(torch.int32).contiguous()
    assert _function is not None
    status = _function(
        qkv.data_ptr(),
        out.data_ptr(),
        bias.data_ptr() if bias is not None else None,
        bits.data_ptr() if bits is not None else None,
        region_index.data_ptr() if bits is not None else None,  # type: ignore[union-attr]
        region_value,
        windows,
        heads,
        n,
        scale,
        max(1, torch.get_num_threads()),
    )
    if status != 0:
        raise MemoryError("the attention kernel could not allocate its buffers")
    return out


def reference_attention(
    qkv: Tensor, heads: int, scale: float, bias: Tensor | None = None, mask: Tensor | None = None
) -> Tensor:
    """The same attention in float32 with PyTorch (``mask`` (windows, N, N) additive): for checks."""
    windows, n, _ = qkv.shape
    q, k, v = qkv.float().view(windows, n, 3, heads, HEAD_DIM).permute(2, 0, 3, 1, 4).unbind(0)
    add = torch.zeros(1, 1, n, n)
    if bias is not None:
        add = add + bias.float().view(1, heads, n, n)
    if mask is not None:
        add = add + mask.float().view(windows, 1, n, n)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=add, scale=scale)
    return out.transpose(1, 2).reshape(windows, n, heads * HEAD_DIM)


def _self_check() -> bool:
    """The kernel against float32 attention on odd sizes, a bias and a shift mask."""
    gen = torch.Generator().manual_seed(0)
    for windows, heads, n in ((3, 2, 37), (2, 1, 5), (1, 3, 1)):
        qkv = torch.randn(windows, n, 3 * heads * HEAD_DIM, generator=gen).to(torch.bfloat16)
        bias = torch.randn(heads, n, n, generator=gen)
        regions = torch.randint(0, 2, (2, n), generator=gen)
        masks = torch.where(regions[:, :, None] != regions[:, None, :], -100.0, 0.0)
        index = torch.arange(windows, dtype=torch.int32) % 2
        bits = region_bits(masks, -100.0)
        got = window_attention(qkv, heads, HEAD_DIM**-0.5, bias, bits, index, -100.0).float()
        want = reference_attention(qkv, heads, HEAD_DIM**-0.5, bias, masks[index.long()])
        if not bool(torch.isfinite(got).all()) or (got - want).abs().max().item() > CHECK_TOLERANCE:
            return False
    return True
