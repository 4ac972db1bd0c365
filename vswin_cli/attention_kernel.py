"""Window attention on x86-64 CPUs, float32 and bfloat16: a small C kernel built here on first use.

PyTorch's CPU attention runs Swin's shapes, 392-token windows with 32-dim heads, at ~90 GFLOP/s
in float32 and in bf16 on CPUs without AMX (oneDNN's batched matmuls do no better), so attention
took a third of a float32 forward and over half of a bf16 one. ``kernels/window_attention.c``
does one (window, head) at a time in cache: FMA in float32 (AVX-512, or AVX2 with FMA),
``vdpbf16ps`` in bf16 (AVX-512 BF16); see benchmarks/README.md for the figures.

The kernel is compiled with the C compiler at hand (``$CC``, ``cc``, ``gcc`` or ``clang``) into
``$XDG_CACHE_HOME/vswin/kernels`` (``~/.cache/...``; builds unused for 30 days are pruned) the
first time a forward needs it, then each precision is checked once against PyTorch's attention
on small inputs (float32 within 1e-5).
Where any of this is not possible (no compiler, another CPU or OS, a check fails,
``VSWIN_EAGER=1``) :func:`available` is False and the model uses
``scaled_dot_product_attention`` as before.

Its work runs on PyTorch's own OpenMP threads where it can find their runtime in the process
(:func:`openmp_runtime`), through the runtime's ``GOMP_parallel``: threads of its own would
share the cores with PyTorch's, which spin for a few ms after each of PyTorch's parallel
regions (measured: attention 0.23 s against 0.15 s per bf16 forward).
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
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

HEAD_DIM = 32
SOURCE = Path(__file__).with_name("kernels") / "window_attention.c"
FLAGS = ("-O3", "-fPIC", "-shared", "-pthread")
# The instruction sets the kernel has code for, best first: the flags that build it and the
# /proc/cpuinfo features it needs. AVX2 has float32 code only.
ISA_FLAGS = {"avx512": ("-mavx512f", "-mavx512bw", "-mavx512vl"), "avx2": ("-mavx2", "-mfma")}
ISA_CPU_FLAGS = {"avx512": frozenset({"avx512f", "avx512bw", "avx512vl"}), "avx2": frozenset({"avx2", "fma"})}
BF16_FLAG = "-mavx512bf16"  # compilers without it (GCC < 9) build the float32 code alone
# Largest difference from float32 attention the first-use check accepts. float32: the kernel
# measures ~1e-6, as PyTorch's does; bf16: ~0.01 on unit-variance inputs (probabilities are
# rounded to bfloat16, as in PyTorch's bf16 attention).
CHECK_TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 0.05}
ENTRY_POINTS = {torch.float32: "vswin_window_attention_f32", torch.bfloat16: "vswin_window_attention_bf16"}
# Each source version, compiler and build gets its own library in the cache. A build that was
# not used for this long is removed when another one is compiled (another installed version
# that still wants it compiles it again, in seconds); leftovers of interrupted builds sooner.
UNUSED_BUILD_DAYS = 30
STALE_PARTIAL_HOURS = 1

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_states: dict[torch.dtype, str] = {}  # per precision: "ok", or why it is off; absent: not tried
_functions: dict[torch.dtype, Any] = {}
_NOT_LOOKED_UP = object()
_parallel: Any = _NOT_LOOKED_UP  # GOMP_parallel's address, None for threads of the kernel's own
_OPENMP_NAMES = ("libgomp", "libiomp", "libomp")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The feature flags of /proc/cpuinfo (Linux); empty where there is no such file."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def isa(cpuinfo: str | None = None) -> str | None:
    """The kernel's build for this CPU: "avx512", "avx2" (float32 only), or None for neither."""
    flags = cpu_flags(cpuinfo)
    return next((name for name, needed in ISA_CPU_FLAGS.items() if needed <= flags), None)


def cpu_supports(dtype: torch.dtype, cpuinfo: str | None = None) -> bool:
    """Whether the kernel has ``dtype`` code for this CPU.

    float32: AVX-512 (F, BW, VL) or AVX2 with FMA. bf16: AVX-512 BF16, and no AMX: on CPUs with
    AMX, PyTorch's bf16 attention uses the AMX tiles, which this kernel does not, and no AMX
    machine was at hand to measure which is faster.
    """
    return dtype in ENTRY_POINTS and _cpu_shortfall(dtype, cpuinfo) is None


def _cpu_shortfall(dtype: torch.dtype, cpuinfo: str | None = None) -> str | None:
    """Why this CPU gets no ``dtype`` code (float32 or bfloat16), or None when it does."""
    build = isa(cpuinfo)
    if build is None:
        return "this CPU has neither AVX-512 nor AVX2 with FMA"
    if dtype == torch.float32:
        return None
    flags = cpu_flags(cpuinfo)
    if "amx_bf16" in flags:
        return "this CPU has AMX: PyTorch's attention uses it"
    if build != "avx512" or "avx512_bf16" not in flags:
        return "this CPU lacks AVX-512 BF16"
    return None


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "vswin" / "kernels"


def find_compiler() -> str | None:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def build(compiler: str, directory: Path, target: str = "avx512") -> Path:
    """The kernel for ``target`` (see :func:`isa`) compiled in ``directory``; for AVX-512 with bf16
    code where the compiler can, else float32 alone.

    Raises RuntimeError with the compiler's message when neither builds.
    """
    flags = (*FLAGS, *ISA_FLAGS[target])
    if target != "avx512":
        return _build(compiler, directory, flags)
    try:
        return _build(compiler, directory, (*flags, BF16_FLAG))
    except RuntimeError as with_bf16:
        try:
            return _build(compiler, directory, flags)
        except RuntimeError:
            raise with_bf16 from None


def _build(compiler: str, directory: Path, flags: tuple[str, ...]) -> Path:
    """Compile unless this source's build with this compiler and flags is in ``directory``.

    Written to a temporary name and renamed, so concurrent first runs never load a half-written
    library; its sha256 is kept beside it, and a cached library that no longer matches it (cut
    short by a full disk or a crash, damaged) is built again: loading it would kill the process
    (a bus error), not raise. A cached library's time is renewed on each use; compiling a new one
    prunes the unused ones (:data:`UNUSED_BUILD_DAYS`).
    """
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + compiler.encode() + " ".join(flags).encode()).hexdigest()[:16]
    target = directory / f"window_attention-{key}.so"
    if _intact(target):
        try:
            os.utime(target)
        except OSError:  # a read-only cache still serves its libraries
            pass
        return target
    directory.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=directory, suffix=".so.partial")
    os.close(handle)
    try:
        result = subprocess.run(
            [compiler, *flags, "-o", partial, str(SOURCE)], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"{compiler} exited with {result.returncode}")
        # No fsync needed: a library or digest that a crash leaves torn fails _intact, and is built again.
        _digest_path(target).write_text(_digest(Path(partial)), encoding="ascii")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    prune(directory, keep=target)
    return target


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digest_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def _intact(library: Path) -> bool:
    """Whether ``library`` is what its build wrote (the sha256 kept beside it matches)."""
    try:
        return _digest_path(library).read_text(encoding="ascii").strip() == _digest(library)
    except (OSError, UnicodeDecodeError):
        return False




def prune(directory: Path, keep: Path, now: float | None = None) -> list[Path]:
    """Remove the kernel libraries in ``directory`` unused for :data:`UNUSED_BUILD_DAYS` and the
    partial files of interrupted builds; returns what was removed.

    A process that has a library loaded keeps it mapped after the file is gone.
    """
    now = time.time() if now is None else now
    stale = [(path, UNUSED_BUILD_DAYS * 86400) for path in directory.glob("window_attention-*.so")]
    stale += [(path, STALE_PARTIAL_HOURS * 3600) for path in directory.glob("*.so.partial")]
    removed = []
    for path, max_age in stale:
        try:
            if path != keep and path.stat().st_mtime < now - max_age:
                path.unlink()
                removed.append(path)
                if path.suffix == ".so":
                    _digest_path(path).unlink(missing_ok=True)
        except OSError:  # gone already (another process pruned it) or not ours to remove
            pass
    return removed


def _load_library() -> ctypes.CDLL:
    """Build (or find in the cache) and load the kernel library; raises with the reason."""
    global _library
    if _library is None:
        compiler = find_compiler()
        if compiler is None:
            raise RuntimeError("no C compiler (cc, gcc, clang or $CC)")
        target = isa()
        if target is None:
            raise RuntimeError("this CPU has neither AVX-512 nor AVX2 with FMA")
        try:
            _library = ctypes.CDLL(str(build(compiler, cache_dir(), target)))
        except OSError:  # an unwritable cache (or a library there that won't load): build in a
            # temporary folder, removed once the library is loaded
            scratch = Path(tempfile.mkdtemp(prefix="vswin-kernels-"))
            try:
                _library = ctypes.CDLL(str(build(compiler, scratch, target)))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    return _library


def _why_unavailable(dtype: torch.dtype) -> str | None:
    if os.environ.get("VSWIN_EAGER", "") not in ("", "0"):
        return "VSWIN_EAGER is set"
    if dtype not in ENTRY_POINTS:
        return f"no kernel for {dtype}"
    if not sys.platform.startswith("linux") or platform.machine().lower() not in ("x86_64", "amd64"):
        return "not Linux on x86-64"
    if not cpu_supports(dtype):
        return _cpu_shortfall(dtype) or "this CPU cannot run it"
    return None


def status(dtype: torch.dtype) -> str:
    """'ok' when attention in ``dtype`` runs in the kernel here, otherwise why not (tries it once)."""
    available(dtype)
    return _states.get(dtype, "not tried")


def available(dtype: torch.dtype) -> bool:
    """Whether window attention in ``dtype`` runs in the kernel here; builds and checks it on first use."""
    state = _states.get(dtype)
    if state is not None:
        return state == "ok"
    with _lock:
        if dtype in _states:
            return _states[dtype] == "ok"
        why = _why_unavailable(dtype)
        if why is None:
            try:
                library = _load_library()
                if not hasattr(library, ENTRY_POINTS[dtype]):
                    raise RuntimeError(f"the C compiler has no {BF16_FLAG}: float32 code only")
                function = getattr(library, ENTRY_POINTS[dtype])
                function.restype = ctypes.c_int
                function.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_float] + [ctypes.c_int64] * 3 + [
                    ctypes.c_float, ctypes.c_int, ctypes.c_void_p]
                _functions[dtype] = function
                why = None if _self_check(dtype) else "its result differed from PyTorch's attention"
            except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as error:
                why = f"it could not be built or loaded ({error})"
        if why is not None:
            _functions.pop(dtype, None)
        _states[dtype] = why or "ok"
        return why is None


def reset() -> None:
    """Forget the first-use results (tests; after changing VSWIN_EAGER or $CC)."""
    global _library, _parallel
    with _lock:
        _library = None
        _parallel = _NOT_LOOKED_UP
        _states.clear()
        _functions.clear()


def openmp_runtime(maps: str | None = None) -> str | None:
    """The OpenMP runtime library PyTorch's CPU threads belong to, when there is one in this process.

    The kernel runs its workers on those threads (see kernels/window_attention.c). None where
    PyTorch's parallel backend is not OpenMP, or the runtime cannot be told apart (then the
    kernel starts threads of its own).
    """
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text(errors="replace")
        except OSError:
            return None
    loaded: set[str] = set()
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)  # address, permissions, offset, device, inode, path
        if len(fields) == 6 and os.path.basename(fields[5]).startswith(_OPENMP_NAMES):
            loaded.add(fields[5])
    torch_lib = str(Path(torch.__file__).resolve().parent / "lib") + os.sep
    own = [path for path in loaded if path.startswith(torch_lib)]
    if len(own) == 1:
        return own[0]
    return loaded.pop() if len(loaded) == 1 else None


def runs_on_pytorch_threads() -> bool:
    """Whether the kernel's workers are PyTorch's OpenMP threads (else threads of its own)."""
    return _parallel_function() is not None


def _parallel_function() -> int | None:
    """Address of GOMP_parallel in PyTorch's OpenMP runtime (looked up once), or None."""
    global _parallel
    if _parallel is _NOT_LOOKED_UP:
        address = None
        path = openmp_runtime()
        if path is not None:
            try:
                # RTLD_NOLOAD: the copy already in the process, never a second runtime.
                runtime = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
                address = ctypes.cast(runtime.GOMP_parallel, ctypes.c_void_p).value
            except (OSError, AttributeError):
                address = None
        _parallel = address
    return _parallel  # type: ignore[return-value]


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
    """softmax(q k^T * scale + bias + shift mask) v for every window and head, in qkv's dtype.

    ``qkv`` (windows, N, 3 * heads * 32) float32 or bfloat16 as the qkv linear makes it;
    ``bias`` (heads, N, N) float32; ``bits`` from :func:`region_bits` with ``region_index``
    (windows,) int32 naming each window's mask. Returns (windows, N, heads * 32) in qkv's
    dtype. Call only when :func:`available` is True for that dtype.
    """
    windows, n, width = qkv.shape
    function = _functions.get(qkv.dtype)
    if function is None or width != 3 * heads * HEAD_DIM or not qkv.is_contiguous() or qkv.device.type != "cpu":
        raise ValueError("window_attention takes contiguous CPU (windows, N, 3 * heads * 32) of an available dtype")
    out = torch.empty(windows, n, heads * HEAD_DIM, dtype=qkv.dtype)
    if bias is not None:
        bias = bias.to(torch.float32).reshape(heads, n, n).contiguous()
    if bits is not None:
        if region_index is None:
            raise ValueError("bits need region_index")
        bits = bits.contiguous()
        region_index = region_index.to(torch.int32).contiguous()
    status = function(
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
        _parallel_function(),
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


def _self_check(dtype: torch.dtype) -> bool:
    """The kernel against PyTorch's float32 attention on odd sizes, a bias and a shift mask."""
    gen = torch.Generator().manual_seed(0)
    for windows, heads, n in ((3, 2, 37), (2, 1, 5), (1, 3, 1)):
        qkv = torch.randn(windows, n, 3 * heads * HEAD_DIM, generator=gen).to(dtype)
        bias = torch.randn(heads, n, n, generator=gen)
        regions = torch.randint(0, 2, (2, n), generator=gen)
        masks = torch.where(regions[:, :, None] != regions[:, None, :], -100.0, 0.0)
        index = torch.arange(windows, dtype=torch.int32) % 2
        bits = region_bits(masks, -100.0)
        got = window_attention(qkv, heads, HEAD_DIM**-0.5, bias, bits, index, -100.0).float()
        want = reference_attention(qkv, heads, HEAD_DIM**-0.5, bias, masks[index.long()])
        if not bool(torch.isfinite(got).all()) or (got - want).abs().max().item() > CHECK_TOLERANCE[dtype]:
            return False
    return True
