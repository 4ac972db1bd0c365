"""Seconds per view of vswin's Video Swin against torchvision's, on the same weights, in one run.

    python benchmarks/model_speed.py                    # Swin-T, 2 threads, 3 repeats
    python benchmarks/model_speed.py --model s --repeats 5 --threads 4
    python benchmarks/model_speed.py --device cuda --batch 16   # float32 (TF32 off), bf16, fp16

To compare with torchvision, run it with a Python that has torchvision, the repository on the
path (the model module needs torch alone):

    PYTHONPATH=. /path/to/venv-with-torchvision/bin/python benchmarks/model_speed.py

Both models get the same weights (the parity tests' generator, tests/parity/weights.py, so the
weights are deterministic and the classes well separated), the same (1, 3, 32, 224, 224) input,
and the same number of threads. Timings are interleaved (ours fp32, torchvision fp32, ours bf16,
torchvision bf16, matmul rates, again ...) and the median of the repeats is reported, so a
machine shared with other work slows every figure alike and the ratios stay meaningful.

The machine's matmul rate is a large ``torch.mm`` measured in the same run; the "floor" is the
view's arithmetic divided by the float32 rate: what a forward made only of matmuls at that
rate would take. It prints a table and the verdict on issue 9's two criteria:

1. float32: seconds per view <= max(torchvision float32 / 2, 1.5 x floor);
2. best precision: seconds per view <= torchvision float32 / 4.

Freed memory is kept in the process as vswin's engine does (vswin_cli/allocator.py); this is
process-wide, so torchvision runs with it too, and its large attention tensors stop paying page
faults. ``--malloc-default`` leaves glibc as it comes: torchvision as its users run it.

On CUDA (``--device cuda``) the same table is made for float32 with TF32 off (true float32
matmuls, as vswin runs), bfloat16 and float16 autocast; ``--batch`` views go through each
forward (a GPU needs batches to be busy) and the figures stay per view. The matmul rate is an
8192^3 ``torch.mm``; times are taken after ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vswin_cli import allocator, attention_kernel  # noqa: E402
from vswin_cli.checkpoints import native_to_torchvision  # noqa: E402
from vswin_cli.model import SwinConfig, effective_window, swin_b, swin_s, swin_t  # noqa: E402
from tests.parity import weights as parity_weights  # noqa: E402
from benchmarks.usage import device as device_option, positive_int  # noqa: E402

BUILDERS = {"t": swin_t, "s": swin_s, "b": swin_b}
TORCHVISION_BUILDERS = {"t": "swin3d_t", "s": "swin3d_s", "b": "swin3d_b"}
VIEW = (1, 3, 32, 224, 224)


def view_gflop(config: SwinConfig, shape: tuple[int, ...] = VIEW) -> float:
    """Multiply-adds x 2 of one forward: patch embedding, every linear layer, the two attention
    matmuls, patch merging and the head (softmax, norms and GELU are not counted).

    For Swin-T at 32x224x224 this gives 175.5 GFLOP, the figure issue 9 uses.
    """
    _, cin, t, h, w = shape
    pt, ph, pw = config.patch_size
    d, h, w = -(-t // pt), -(-h // ph), -(-w // pw)
    c = config.embed_dim
    flop = 2 * d * h * w * c * cin * pt * ph * pw
    for stage, depth in enumerate(config.depths):
        window, _ = effective_window((d, h, w), config.window_size, tuple(x // 2 for x in config.window_size))
        padded = [-(-s // wn) * wn for s, wn in zip((d, h, w), window)]
        tokens, padded_tokens = d * h * w, padded[0] * padded[1] * padded[2]
        n = window[0] * window[1] * window[2]
        hidden = int(c * config.mlp_ratio)
        per_block = 2 * padded_tokens * c * 3 * c + 2 * padded_tokens * c * c  # qkv, proj
        per_block += 2 * 2 * padded_tokens * n * c  # q k^T and attn v
        per_block += 2 * 2 * tokens * c * hidden  # mlp
        flop += depth * per_block
        if stage < len(config.depths) - 1:
            h, w = -(-h // 2), -(-w // 2)
            flop += 2 * d * h * w * 4 * c * 2 * c
            c *= 2
    flop += 2 * c * config.num_classes
    return flop / 1e9


def matmul_gflops(dtype: torch.dtype, device: torch.device) -> float:
    """One timed ``torch.mm`` of two square matrices (after a warm-up done by the caller's loop):
    2048 on the CPU, 8192 on a GPU (ten products, their mean)."""
    size, count = (2048, 1) if device.type == "cpu" else (8192, 10)
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    torch.mm(a, b)
    _sync(device)
    start = time.perf_counter()
    for _ in range(count):
        torch.mm(a, b)
    _sync(device)
    return count * 2 * size**3 / (time.perf_counter() - start) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_torchvision(size: str, native: dict[str, torch.Tensor]) -> torch.nn.Module | None:
    try:
        from torchvision.models import video as tv_video
    except ImportError:
        return None
    model = getattr(tv_video, TORCHVISION_BUILDERS[size])()
    result = model.load_state_dict(native_to_torchvision(native), strict=False)
    # torchvision keeps relative_position_index as a persistent buffer; its own is the paper's.
    assert not result.unexpected_keys, result.unexpected_keys
    assert all(k.endswith("relative_position_index") for k in result.missing_keys), result.missing_keys
    return model.eval()


def precision_context(dtype: torch.dtype, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def timed_forward(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype) -> tuple[float, torch.Tensor]:
    """Seconds per view (the forward's time over the batch) and the float32 logits on the CPU."""
    with torch.inference_mode(), precision_context(dtype, x.device):
        _sync(x.device)
        start = time.perf_counter()
        logits = model(x)
        _sync(x.device)
        seconds = time.perf_counter() - start
    return seconds / x.shape[0], logits.float().cpu()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(BUILDERS), default="t", help="Swin-T, -S or -B")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed forwards per configuration (median)")
    parser.add_argument("--no-torchvision", action="store_true", help="time vswin alone")
    parser.add_argument("--no-bf16", action="store_true", help="float32 only")
    parser.add_argument("--device", type=device_option, default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--batch", type=positive_int, default=1, help="views per forward (default 1); figures stay per view")
    parser.add_argument("--malloc-default", action="store_true",
                        help="leave glibc's malloc as it is (the engine keeps freed memory: vswin_cli/allocator.py)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # As the engine does for users. Process-wide, so torchvision gets it too (and gains more).
    kept = False if args.malloc_default else allocator.keep_freed_memory()
    device = torch.device(args.device)
    if device.type == "cuda":  # float32 means float32: no TF32 matmuls, as vswin runs
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    ours = BUILDERS[args.model]()
    native = parity_weights.torch_state_dict(ours)
    ours.load_state_dict(native)
    reference = None if args.no_torchvision else load_torchvision(args.model, native)
    ours.to(device)
    if reference is not None:
        reference.to(device)
    gflop = view_gflop(ours.config)
    x = torch.from_numpy(parity_weights.make_input(VIEW, seed=1)).to(device).expand(args.batch, -1, -1, -1, -1).contiguous()

    reduced = [] if args.no_bf16 else [torch.bfloat16] + ([torch.float16] if device.type == "cuda" else [])
    dtypes = [torch.float32] + reduced
    models: dict[str, torch.nn.Module] = {"vswin": ours}
    if reference is not None:
        models["torchvision"] = reference
    runs: dict[tuple[str, torch.dtype], list[float]] = {(m, d): [] for m in models for d in dtypes}
    rates: dict[torch.dtype, list[float]] = {d: [] for d in dtypes}
    outputs: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    where = (torch.cuda.get_device_name(device) if device.type == "cuda" else
             f"{platform.processor() or platform.machine()}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"torch {torch.__version__}, {args.threads} threads, {where}; Swin-{args.model.upper()} "
          f"{gflop:.1f} GFLOP per view, batch {args.batch}", file=sys.stderr)
    if device.type == "cpu":
        kernel = ", ".join(f"{d}: {attention_kernel.status(d)}" for d in (torch.float32, torch.bfloat16))
        kernel += (f" ({attention_kernel.isa()} build, on "
                   f"{'PyTorch OpenMP threads' if attention_kernel.runs_on_pytorch_threads() else 'threads of its own'})")
    else:
        kernel = f"not used on {device.type}"
    print(f"freed memory kept in the process: {kept}; vswin's attention kernel: {kernel}", file=sys.stderr)
    for name, model in models.items():  # warm-up: first calls allocate, build caches, pick kernels
        for dtype in dtypes:
            timed_forward(model, x, dtype)
    for dtype in dtypes:
        matmul_gflops(dtype, device)
    for repeat in range(args.repeats):
        for dtype in dtypes:
            rates[dtype].append(matmul_gflops(dtype, device))
            for name, model in models.items():
                seconds, logits = timed_forward(model, x, dtype)
                runs[(name, dtype)].append(seconds)
                outputs[(name, dtype)] = logits
                print(f"  repeat {repeat + 1}: {name} {_short(dtype)} {seconds:.4f} s/view", file=sys.stderr)

    rate = {d: statistics.median(v) for d, v in rates.items()}
    floor = gflop / rate[torch.float32]
    seconds = {k: statistics.median(v) for k, v in runs.items()}
    tv32 = seconds.get(("torchvision", torch.float32))

    print()
    on = torch.cuda.get_device_name(device) + " (TF32 off)" if device.type == "cuda" else f"{args.threads} threads"
    print(f"Swin-{args.model.upper()}, {tuple(VIEW)} views, batch {args.batch}, {on}, median of {args.repeats}; "
          f"{gflop:.1f} GFLOP per view")
    size = 2048 if device.type == "cpu" else 8192
    print(f"matmul rate (torch.mm {size}^2): " + ", ".join(f"{_short(d)} {rate[d]:.0f} GFLOP/s" for d in dtypes))
    print(f"float32 floor: {floor:.4f} s per view (1.5x floor: {1.5 * floor:.4f} s)")
    print()
    header = f"| {'model':<11} | {'precision':<9} | {'s/view':>6} | {'GFLOP/s':>7} | {'of fp32 mm':>10} | {'of own mm':>9} | {'x floor':>7} | {'vs tv fp32':>10} |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    digits = 2 if device.type == "cpu" else 4
    for (name, dtype), s in seconds.items():
        achieved = gflop / s
        versus = f"{tv32 / s:.2f}x" if tv32 else "n/a"
        print(f"| {name:<11} | {_short(dtype):<9} | {s:>6.{digits}f} | {achieved:>7.1f} | {achieved / rate[torch.float32]:>10.0%} | "
              f"{achieved / rate[dtype]:>9.0%} | {s / floor:>7.2f} | {versus:>10} |")
    print()

    ours32 = seconds[("vswin", torch.float32)]
    ok = True
    if tv32 is None:
        print("criterion 1 (fp32 <= max(torchvision/2, 1.5x floor)): torchvision not importable; "
              f"vswin fp32 is {ours32 / floor:.2f}x the floor (1.5x allowed)")
        ok = ours32 <= 1.5 * floor
    else:
        bound = max(tv32 / 2, 1.5 * floor)
        passed = ours32 <= bound
        ok &= passed
        print(f"criterion 1: vswin fp32 {ours32:.4f} s <= max(torchvision fp32 / 2 = {tv32 / 2:.4f}, 1.5x floor = "
              f"{1.5 * floor:.4f}) = {bound:.4f} s: {'PASS' if passed else 'FAIL'} "
              f"(speed-up {tv32 / ours32:.2f}x, {ours32 / floor:.2f}x the floor)")
        if reduced:
            best_dtype = min(dtypes, key=lambda d: seconds[("vswin", d)])
            best = seconds[("vswin", best_dtype)]
            passed = best <= tv32 / 4
            ok &= passed
            print(f"criterion 2: vswin best precision ({_short(best_dtype)}) {best:.4f} s <= torchvision fp32 / 4 = "
                  f"{tv32 / 4:.4f} s: {'PASS' if passed else 'FAIL'} (speed-up {tv32 / best:.2f}x)")
    for dtype in reduced:
        p32 = torch.softmax(outputs[("vswin", torch.float32)], -1)
        p16 = torch.softmax(outputs[("vswin", dtype)], -1)
        same = torch.equal(p32.topk(5).indices, p16.topk(5).indices)
        logit_diff = (outputs[("vswin", dtype)] - outputs[("vswin", torch.float32)]).abs().max().item()
        print(f"vswin {_short(dtype)} vs fp32 on this input: top-5 {'identical' if same else 'DIFFERENT'}, "
              f"max |p - p_fp32| = {(p16 - p32).abs().max().item():.2e}, max |logit diff| = {logit_diff:.2e}")
    if reference is not None:
        diff = (outputs[("vswin", torch.float32)] - outputs[("torchvision", torch.float32)]).abs().max().item()
        print(f"vswin vs torchvision fp32 logits: max |diff| = {diff:.1e}")
    return 0 if ok else 1


def _short(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


if __name__ == "__main__":
    sys.exit(main())
