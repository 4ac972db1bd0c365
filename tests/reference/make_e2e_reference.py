"""Produce the end-to-end reference of tests/test_e2e_official.py by RUNNING the official Video
Swin code: its test pipeline (mmaction2 0.x SampleFrames test mode, Resize, ThreeCrop, Flip,
Normalize, FormatShape, on real mmcv 1.7.2) feeds its model (SwinTransformer3D + I3DHead, the
release checkpoints' key names) and the views are averaged as BaseRecognizer.average_clip does
with test_cfg average_clips='prob' (softmax over classes per view, mean over the views).

    # the environments of make_pipeline_reference.py and tests/parity/README.md, plus einops:
    /work/scratch/mmcv-venv/bin/pip install einops==0.8.2
    /work/scratch/mmcv-venv/bin/python tests/reference/make_e2e_reference.py /work/scratch/official

The protocol is the paper's Kinetics one: 4 clips of 32 frames every 2nd frame, short side 224,
three 224 crops (12 views). The model is narrow (embed dim 32) but has Swin-T's depths, window
8x7x7 and 400 classes, so the Kinetics-400 label names apply. Its weights come from
tests/parity/weights.py, keyed by the official state-dict names, so the test rebuilds the very
same official-format checkpoint without storing it. Nothing from vswin_cli is imported.

The classifier's weight and bias are then multiplied by HEAD_GAIN = 4: with the generator's
unit-gain scales the averaged probabilities are nearly flat (top-1 ~0.02 of 400 classes) and a
frame-index mistake moves them by only ~4e-4; with the gain the top-1 is ~0.3 and the same
mistake moves them by ~1e-2, a hundred times the 1e-4 tolerance (see the "mistakes" entries).
The top-5 labels are looked up in the official repository's demo/label_map_k400.txt.

Frames are decoded by a plain sequential cv2.VideoCapture read, BGR -> RGB, as the official
OpenCVDecode does; the test videos are MJPEG, whose decoding is exact and the same everywhere.

Writes, next to this script:
  e2e_landscape.avi   100 frames, 120x90 (4:3): no index wraps around
  e2e_portrait.avi    20 frames, 54x96 (9:16, phone-like): shorter than one clip, indices wrap
  e2e_official.json   settings, key list with shapes, per video: frame indices, the full
                      probability vector (400 floats), top-5, and how far a few deliberate
                      pipeline mistakes move the probabilities (evidence the test can fail)
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "parity"))

import make_pipeline_reference as pipeline_ref
import weights as parity_weights

OFFICIAL_COMMIT = "db018fb8896251711791386bbd2127562fd8d6a6"
PROTOCOL = {"clip_len": 32, "frame_interval": 2, "num_clips": 4, "short": 224, "crop": 224, "three": True}
CONFIG = {
    "patch_size": [2, 4, 4],
    "embed_dim": 32,
    "depths": [2, 2, 6, 2],
    "num_heads": [1, 2, 4, 8],
    "window_size": [8, 7, 7],
    "num_classes": 400,
}
SEED = parity_weights.BASE_SEED + 6  # issue 6; any seed works, this one is not tuned
HEAD_GAIN = 4.0
VIDEOS = {
    # name: (width, height, frames)
    "e2e_landscape.avi": (120, 90, 100),
    "e2e_portrait.avi": (54, 96, 20),
}
TOP_K = 5


def frame(t: int, width: int, height: int) -> np.ndarray:
    """Frame t (RGB uint8): drifting gradients, a square crossing the picture, a sweeping bar."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (xx * 220 // (width - 1) + 4 * t) % 256
    img[..., 1] = (yy * 220 // (height - 1) + 3 * t) % 256
    img[..., 2] = (80 + 60 * np.sin((xx + yy) / 9.0 + t / 5.0)).astype(np.uint8)
    side = max(8, min(width, height) // 4)
    x0 = (3 * t) % (width - side)
    y0 = (2 * t) % (height - side)
    img[y0:y0 + side, x0:x0 + side] = (240, (20 + 9 * t) % 256, 40)
    bar = (t * 5) % width
    img[:, bar:bar + 3] = (250, 250, 30)
    return img


def make_video(path: Path, width: int, height: int, count: int) -> None:
    """MJPEG in AVI via ffmpeg: every frame a key frame, decoded identically by any ffmpeg."""
    raw = np.stack([frame(t, width, height) for t in range(count)]).tobytes()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
         "-r", "25", "-i", "-", "-c:v", "mjpeg", "-q:v", "4", "-pix_fmt", "yuvj420p", str(path)],
        input=raw, check=True,
    )


def official_views(mods, frames: list[np.ndarray], case: dict) -> tuple[np.ndarray, list[list[int]]]:
    """(views (crops*clips, 3, T, H, W) float32, frame indices per clip) from the official pipeline."""
    sampler = mods["loading"].SampleFrames(clip_len=case["clip_len"], frame_interval=case["frame_interval"],
                                           num_clips=case["num_clips"], test_mode=True)
    indices = sampler({"total_frames": len(frames), "start_index": 0})["frame_inds"]
    views = pipeline_ref.official_tensor(mods, frames, case)
    return views, indices.reshape(case["num_clips"], case["clip_len"]).tolist()


def swap_to_model_stubs() -> None:
    """Forget the pipeline's stub packages (mmaction, timm) and real mmcv before the model's own stubs."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("mmaction", "mmcv", "timm"):
            del sys.modules[name]


def average_clip_prob(logits, num_segs: int):
    """BaseRecognizer.average_clip with average_clips='prob' (mmaction2 0.x, recognizers/base.py)."""
    import torch.nn.functional as F

    scores = logits.view(logits.shape[0] // num_segs, num_segs, -1)
    return F.softmax(scores, dim=2).mean(dim=1)


def run_views(model, views: np.ndarray):
    """(probabilities (400,), view logits) of one video: backbone + head per view (one at a time, to
    bound memory; Recognizer3D batches them, which changes nothing but rounding), then average_clip."""
    import torch

    with torch.inference_mode():
        logits = torch.cat([model(torch.from_numpy(np.ascontiguousarray(v[None]))) for v in views])
        return average_clip_prob(logits, num_segs=len(views))[0].double().numpy(), logits.numpy()


def main() -> None:
    official = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/scratch/official")
    mods = pipeline_ref.load_official(official)
    import mmcv

    mmcv_version = mmcv.__version__
    prepared = {}
    for name, (width, height, count) in VIDEOS.items():
        path = HERE / name
        if not path.exists():
            make_video(path, width, height, count)
        frames = pipeline_ref.decode_all(path)
        assert len(frames) == count and frames[0].shape == (height, width, 3), (name, len(frames), frames[0].shape)
        views, indices = official_views(mods, frames, PROTOCOL)
        # Deliberate mistakes, to show the tolerance catches them: frame indices off by one,
        # one centre crop instead of three, mirrored views, BGR instead of RGB.
        shifted = official_views(mods, frames[1:] + frames[:1], PROTOCOL)[0]
        centre = pipeline_ref.official_tensor(mods, frames, {**PROTOCOL, "three": False})
        bgr = official_views(mods, [f[:, :, ::-1].copy() for f in frames], PROTOCOL)[0]
        prepared[name] = {
            "frames": len(frames), "size": [width, height], "views": views, "indices": indices,
            "mistakes": {"frames shifted by one": shifted, "centre crop only": centre,
                         "views mirrored": views[..., ::-1], "BGR instead of RGB": bgr},
        }
        print(f"{name}: {len(frames)} frames, views {views.shape}", flush=True)

    swap_to_model_stubs()
    import make_official_fixtures as official_fixtures  # its stand-ins for mmcv, registries and timm
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(2)
    backbone_cls, head_cls = official_fixtures.import_official(official)
    model = official_fixtures.build_reference(CONFIG, backbone_cls, head_cls).eval()
    keys_and_shapes = parity_weights.fill_generated(model, SEED)
    with torch.no_grad():
        for param in model.cls_head.fc_cls.parameters():
            param.mul_(HEAD_GAIN)
    state = model.state_dict()
    label_map = (official / "demo" / "label_map_k400.txt").read_text(encoding="utf-8").splitlines()
    assert len(label_map) == CONFIG["num_classes"]
    for key, _ in keys_and_shapes:
        if key.endswith("relative_position_index"):
            assert np.array_equal(state[key].numpy(), parity_weights.relative_position_index(CONFIG["window_size"]))

    videos = {}
    for name, item in prepared.items():
        probs, logits = run_views(model, item["views"])
        order = np.argsort(-probs, kind="stable")
        top = order[:TOP_K]
        gaps = np.diff(-probs[order[:TOP_K + 1]])
        mistakes = {}
        for what, views in item["mistakes"].items():
            other, _ = run_views(model, views)
            mistakes[what] = float(np.abs(other - probs).max())
        print(f"{name}: top-5 {top.tolist()} {np.round(probs[top], 5).tolist()}, smallest gap {gaps.min():.2e}, "
              f"view logits std {logits.std():.3f}, mistakes {mistakes}", flush=True)
        videos[name] = {
            "frames": item["frames"],
            "width": item["size"][0],
            "height": item["size"][1],
            "frame_indices": item["indices"],
            "top5_indices": top.tolist(),
            "top5_labels": [label_map[i].strip() for i in top],
            "top5_probabilities": [float(f"{p:.9g}") for p in probs[top]],
            "probabilities": [float(f"{p:.9g}") for p in probs],
            "smallest_top6_gap": float(gaps.min()),
            "max_probability_change_under_mistakes": mistakes,
        }

    reference = {
        "reference": (f"official test pipeline + SwinTransformer3D + I3DHead, "
                      f"SwinTransformer/Video-Swin-Transformer@{OFFICIAL_COMMIT}, mmcv {mmcv_version}"),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
                     "opencv": pipeline_ref.cv2.__version__},
        "protocol": PROTOCOL,
        "average_clips": "prob",
        "config": CONFIG,
        "generator": {**parity_weights.generator_settings(), "seed": SEED},
        "head_gain": HEAD_GAIN,
        "state_dict": keys_and_shapes,
        "checksums": {k: parity_weights.checksum(state[k].numpy()) for k in parity_weights.checksum_keys(list(state))},
        "videos": videos,
    }
    out = HERE / "e2e_official.json"
    out.write_text(json.dumps(reference, indent=1) + "\n")
    print("wrote", out, *(HERE / n for n in VIDEOS))


if __name__ == "__main__":
    main()
