"""How far bfloat16 or float16 (autocast, as ``--precision`` runs them) moves vswin's outputs from float32.

    python benchmarks/precision.py                 # Swin-T, 8 clips of 32x224x224, bf16 on the CPU
    python benchmarks/precision.py --model b --clips 4
    python benchmarks/precision.py --device cuda --dtype fp16   # float32 reference with TF32 off

Weights: the parity tests' deterministic generator (tests/parity/weights.py) for the full-size
model. Clips: normal noise (like a normalised clip of noise) and structured ones (moving
gratings, a moving bright square on a gradient, a flat grey clip with slow flicker), normalised
like real frames. Per clip it prints whether the top-5 classes (in order) are identical, the
largest probability difference and the largest logit difference; at the end the maxima, which
is the bound benchmarks/README.md documents for ``--precision auto``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vswin_cli.model import VideoSwin, swin_b, swin_s, swin_t  # noqa: E402
from tests.parity import weights as parity_weights  # noqa: E402
from benchmarks.usage import device as device_option, positive_int  # noqa: E402

BUILDERS = {"t": swin_t, "s": swin_s, "b": swin_b}
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def generated_model(size: str) -> VideoSwin:
    return parity_weights.load_generated(BUILDERS[size]())


def structured_clip(kind: int, frames: int = 32, size: int = 224, seed: int = 0) -> torch.Tensor:
    """A (3, T, H, W) normalised clip of 0-255 RGB content that moves: not noise."""
    rng = np.random.default_rng(seed)
    t, y, x = np.meshgrid(np.arange(frames), np.arange(size), np.arange(size), indexing="ij")
    rgb = np.zeros((3, frames, size, size), dtype=np.float32)
    if kind % 3 == 0:  # gratings drifting at different speeds and angles per channel
        for c in range(3):
            angle, period, speed = rng.uniform(0, math.pi), rng.uniform(8, 40), rng.uniform(0.5, 4)
            phase = (x * math.cos(angle) + y * math.sin(angle) - speed * t) * 2 * math.pi / period
            rgb[c] = 127.5 + 120 * np.sin(phase)
    elif kind % 3 == 1:  # a bright square crossing a colour gradient
        for c in range(3):
            rgb[c] = 255 * (x / size if c == 0 else y / size if c == 1 else 0.5)
        side = int(rng.integers(30, 70))
        for f in range(frames):
            top, left = (f * 5) % (size - side), (f * 3 + 40) % (size - side)
            rgb[:, f, top : top + side, left : left + side] = 250
    else:  # flat grey with a slow flicker and a little sensor noise
        rgb[:] = 128 + 40 * np.sin(t * 0.2)[None] + rng.normal(0, 3, size=rgb.shape)
    rgb = np.clip(rgb, 0, 255)
    return torch.from_numpy((rgb - MEAN[:, None, None, None]) / STD[:, None, None, None])


def compare(model: VideoSwin, clip: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> dict[str, float | bool]:
    device = next(model.parameters()).device
    x = clip[None].to(device)
    with torch.inference_mode():
        logits32 = model(x).float().cpu()
        with torch.autocast(device.type, dtype=dtype):
            logits16 = model(x).float().cpu()
    p32, p16 = torch.softmax(logits32, -1), torch.softmax(logits16, -1)
    return {
        "top5_identical": bool(torch.equal(p32.topk(5).indices, p16.topk(5).indices)),
        "max_prob_diff": (p32 - p16).abs().max().item(),
        "max_logit_diff": (logits32 - logits16).abs().max().item(),
        "top1_prob": p32.max().item(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(BUILDERS), default="t")
    parser.add_argument("--clips", type=positive_int, default=8, help="half noise, half structured")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--device", type=device_option, default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16", help="reduced precision to compare")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False  # the float32 reference is true float32
    torch.backends.cudnn.allow_tf32 = False
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    model = generated_model(args.model).to(args.device)
    worst = {"max_prob_diff": 0.0, "max_logit_diff": 0.0}
    all_same = True
    print("| clip | top-1 p (fp32) | top-5 identical | max abs prob diff | max abs logit diff |")
    print("|---|---|---|---|---|")
    for i in range(args.clips):
        if i % 2 == 0:
            name = f"noise seed {i}"
            clip = torch.from_numpy(parity_weights.make_input((3, 32, 224, 224), seed=100 + i))
        else:
            name = ["gratings", "moving square", "flat flicker"][(i // 2) % 3]
            clip = structured_clip(i // 2, seed=i)
        result = compare(model, clip, dtype)
        all_same &= bool(result["top5_identical"])
        for key in worst:
            worst[key] = max(worst[key], float(result[key]))
        print(f"| {name} | {result['top1_prob']:.3f} | {'yes' if result['top5_identical'] else 'NO'} | "
              f"{result['max_prob_diff']:.2e} | {result['max_logit_diff']:.2e} |", flush=True)
    print(f"\n{args.dtype} on {args.device}: all top-5 identical: {all_same}; max |p - p_fp32| = {worst['max_prob_diff']:.2e}; "
          f"max |logit diff| = {worst['max_logit_diff']:.2e}")
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
