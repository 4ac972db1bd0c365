"""Where one forward of vswin's model spends its time: the torch profiler's table, by operator.

    python benchmarks/op_profile.py                            # Swin-T, one view, float32, CPU
    python benchmarks/op_profile.py --dtype bf16
    python benchmarks/op_profile.py --device cuda --batch 16 --dtype fp32   # TF32 off

Same generated weights and input as model_speed.py; three warm-up forwards, then one profiled.

vswin's CPU attention kernel (vswin_cli/kernels, called through ctypes) is invisible to the
profiler: its calls are wrapped here in ``record_function``, so they get a row of their own,
``vswin::window_attention (C kernel)``, and count in the table's totals.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.model_speed import BUILDERS, VIEW  # noqa: E402
from benchmarks.usage import device as device_option, positive_int  # noqa: E402
from vswin_cli import allocator, attention_kernel  # noqa: E402
from tests.parity import weights as parity_weights  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
KERNEL_ROW = "vswin::window_attention (C kernel)"


def name_the_kernel() -> None:
    """Wrap vswin's attention kernel in a profiler range: ctypes calls are no operator, so without
    this their time (about a fifth of a CPU forward) is missing from the rows and the totals.
    The model calls it as ``attention_kernel.window_attention``, so replacing the attribute is enough."""
    kernel = attention_kernel.window_attention

    def window_attention(*args, **kwargs):  # type: ignore[no-untyped-def]
        with record_function(KERNEL_ROW):
            return kernel(*args, **kwargs)

    attention_kernel.window_attention = window_attention


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(BUILDERS), default="t")
    parser.add_argument("--device", type=device_option, default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--batch", type=positive_int, default=1)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--rows", type=positive_int, default=25)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    allocator.keep_freed_memory()  # as the engine does
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    name_the_kernel()

    model = parity_weights.load_generated(BUILDERS[args.model]()).to(device)
    x = torch.from_numpy(parity_weights.make_input(VIEW, seed=1)).to(device)
    x = x.expand(args.batch, -1, -1, -1, -1).contiguous()
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode(), autocast:
        for _ in range(3):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        with profile(activities=activities) as prof:
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    sort = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"Swin-{args.model.upper()}, batch {args.batch}, {args.dtype} on {device}")
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows, max_name_column_width=50))
    return 0


if __name__ == "__main__":
    sys.exit(main())
