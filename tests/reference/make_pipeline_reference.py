"""Produce the reference data of tests/test_sampling.py and tests/test_transforms.py by RUNNING
the official Video Swin code (mmaction2 0.x as shipped in SwinTransformer/Video-Swin-Transformer
at db018fb) with the real mmcv 1.x image functions.

    git -C <mirror of SwinTransformer/Video-Swin-Transformer> archive HEAD | tar -x -C /work/scratch/official
    python -m venv --system-site-packages /work/scratch/mmcv-venv
    MMCV_WITH_OPS=0 /work/scratch/mmcv-venv/bin/pip install --no-build-isolation mmcv==1.7.2
    /work/scratch/mmcv-venv/bin/python tests/reference/make_pipeline_reference.py /work/scratch/official

Nothing from vswin_cli is imported here: every expected value comes from the official classes
(SampleFrames, Resize, ThreeCrop, CenterCrop, Flip, Normalize, FormatShape) run on frames that a
plain sequential cv2.VideoCapture read decodes (BGR -> RGB by reversing channels, as the official
OpenCVDecode does). Only the registry/file-client/timm imports of those modules are stubbed; they
do not take part in the computation. numpy >= 1.24 dropped the alias ``np.int`` (== ``int``) that
the official code uses, so it is restored.

Writes, next to this script:
  sampling.json     frame indices (SampleFrames test mode, uniform mode), crop boxes, resize sizes
  pipeline.avi      the 40-frame 96x72 MJPEG test video (deterministic content)
  pipeline.npz      official tensors for that video: full for small protocols, fingerprints for
                    the real ones (224 x three crops, 256 x centre crop)
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
COUNTS = [1, 2, 3, 5, 31, 32, 33, 34, 62, 63, 64, 65, 66, 96, 127, 128, 129, 130, 300, 301, 997, 1000, 12345]
CLIP_CONFIGS = [(32, 2, 4), (32, 2, 1), (8, 4, 3), (16, 1, 10)]  # clip_len, frame_interval, num_clips
UNIFORM_CONFIGS = [32, 8]
THREE_CROP_SHAPES = [(224, 224), (224, 225), (224, 298), (224, 299), (224, 398), (298, 224), (299, 224), (225, 224)]
CENTER_CROP_SHAPES = [(256, 256), (256, 341), (341, 256), (257, 300), (224, 224), (225, 227)]
RESIZE_SIZES = [(96, 72), (72, 96), (33, 17), (17, 33), (640, 360), (360, 640), (1920, 1080), (320, 240),
                (176, 144), (100, 100), (854, 480), (1280, 720), (481, 853), (1, 1), (4000, 3)]  # (w, h)
# Small protocols compared in full; real ones by fingerprint (their tensors are hundreds of MB).
FULL_CASES = {
    "small_three": dict(clip_len=4, frame_interval=3, num_clips=2, short=32, crop=32, three=True),
    "small_center": dict(clip_len=4, frame_interval=2, num_clips=2, short=40, crop=32, three=False),
}
PRINT_CASES = {
    "kinetics": dict(clip_len=32, frame_interval=2, num_clips=4, short=224, crop=224, three=True),
    "torchvision": dict(clip_len=32, frame_interval=2, num_clips=4, short=256, crop=224, three=False),
    "sthv2": dict(clip_len=32, frame_interval=2, num_clips=1, short=224, crop=224, three=True, uniform=True),
}
SAMPLES = 4096


def load_official(root: Path):
    """Import the official pipeline modules with only their registry imports stubbed."""
    np.int = int  # removed from numpy 1.24; the official code means the builtin
    registry = types.SimpleNamespace(register_module=lambda *a, **k: (lambda cls: cls))
    stubs = {
        "mmaction": types.ModuleType("mmaction"),
        "mmaction.utils": types.ModuleType("mmaction.utils"),
        "mmaction.datasets": types.ModuleType("mmaction.datasets"),
        "mmaction.datasets.builder": types.ModuleType("mmaction.datasets.builder"),
        "mmaction.datasets.pipelines": types.ModuleType("mmaction.datasets.pipelines"),
        "timm": types.ModuleType("timm"),
        "timm.data": types.ModuleType("timm.data"),
    }
    for name in ("mmaction", "mmaction.datasets", "mmaction.datasets.pipelines", "timm"):
        stubs[name].__path__ = []
    stubs["mmaction.datasets.builder"].PIPELINES = registry
    for helper in ("get_random_string", "get_shm_dir", "get_thread_id"):
        setattr(stubs["mmaction.utils"], helper, lambda: None)
    stubs["timm.data"].random_erasing = types.SimpleNamespace(RandomErasing=object)
    sys.modules.update(stubs)
    modules = {}
    for name in ("loading", "augmentations", "formating"):
        full = f"mmaction.datasets.pipelines.{name}"
        spec = importlib.util.spec_from_file_location(full, root / "mmaction/datasets/pipelines" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
        modules[name] = module
    return modules


def sampling_reference(loading) -> dict:
    clips = {}
    for clip_len, interval, num_clips in CLIP_CONFIGS:
        sampler = loading.SampleFrames(clip_len=clip_len, frame_interval=interval, num_clips=num_clips, test_mode=True)
        key = f"{clip_len}x{interval}x{num_clips}"
        clips[key] = {}
        for count in COUNTS:
            out = sampler({"total_frames": count, "start_index": 0})
            clips[key][str(count)] = out["frame_inds"].reshape(num_clips, clip_len).tolist()
    uniform = {}
    for clip_len in UNIFORM_CONFIGS:
        sampler = loading.SampleFrames(clip_len=clip_len, frame_interval=2, num_clips=1, frame_uniform=True, test_mode=True)
        uniform[str(clip_len)] = {
            str(count): sampler({"total_frames": count, "start_index": 0})["frame_inds"].tolist()
            for count in sorted(set(COUNTS) | set(range(1, 200)))
        }
    return {"clips": clips, "uniform": uniform}


def crop_reference(aug) -> dict:
    three, center = [], []
    for h, w in THREE_CROP_SHAPES:
        img = np.zeros((h, w, 3), np.uint8)
        out = aug.ThreeCrop(crop_size=224)({"imgs": [img]})
        three.append({"height": h, "width": w, "boxes": out["crop_bbox"].tolist()})
    for h, w in CENTER_CROP_SHAPES:
        img = np.zeros((h, w, 3), np.uint8)
        out = aug.CenterCrop(crop_size=224)({"imgs": [img], "img_shape": (h, w)})
        center.append({"height": h, "width": w, "box": out["crop_bbox"].tolist()})
    resize = []
    for short in (224, 256):
        for w, h in RESIZE_SIZES:
            out = aug.Resize(scale=(-1, short))({"img_shape": (h, w), "modality": "RGB"})
            resize.append({"short": short, "width": w, "height": h, "out_height": out["img_shape"][0], "out_width": out["img_shape"][1]})
    return {"three_crop": three, "center_crop": center, "resize": resize}


def make_video(path: Path) -> None:
    """40 frames of 96x72: gradients, a moving square, coloured bars; MJPEG in AVI via ffmpeg."""
    h, w, n = 72, 96, 40
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = (xx * 255 // (w - 1) + 3 * t) % 256
        img[..., 1] = (yy * 255 // (h - 1) + 5 * t) % 256
        img[..., 2] = ((xx + yy + 7 * t) * 2) % 256
        x0, y0 = (2 * t) % (w - 16), (t * 3) % (h - 16)
        img[y0:y0 + 16, x0:x0 + 16] = (255 - 6 * t % 256, 40, 200)
        img[:, (t % 12) * 8:(t % 12) * 8 + 3] = (250, 250, 20)
        frames.append(img)
    raw = np.stack(frames).tobytes()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "25",
         "-i", "-", "-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p", str(path)],
        input=raw, check=True,
    )


def decode_all(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(np.ascontiguousarray(frame[:, :, ::-1]))


def official_tensor(mods, frames: list[np.ndarray], case: dict) -> np.ndarray:
    loading, aug, fmt = mods["loading"], mods["augmentations"], mods["formating"]
    if case.get("uniform"):
        sampler = loading.SampleFrames(clip_len=case["clip_len"], frame_interval=case["frame_interval"],
                                       num_clips=case["num_clips"], frame_uniform=True, test_mode=True)
    else:
        sampler = loading.SampleFrames(clip_len=case["clip_len"], frame_interval=case["frame_interval"],
                                       num_clips=case["num_clips"], test_mode=True)
    results = sampler({"total_frames": len(frames), "start_index": 0, "modality": "RGB"})
    results["imgs"] = [frames[i] for i in np.squeeze(results["frame_inds"])]
    results["original_shape"] = results["img_shape"] = results["imgs"][0].shape[:2]
    steps = [aug.Resize(scale=(-1, case["short"]))]
    steps.append(aug.ThreeCrop(crop_size=case["crop"]) if case["three"] else aug.CenterCrop(crop_size=case["crop"]))
    steps += [aug.Flip(flip_ratio=0),
              aug.Normalize(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_bgr=False),
              fmt.FormatShape(input_format="NCTHW")]
    for step in steps:
        results = step(results)
    return results["imgs"]


def main() -> None:
    official = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/scratch/official")
    mods = load_official(official)
    import mmcv

    reference = {
        "source": "SwinTransformer/Video-Swin-Transformer@db018fb mmaction/datasets/pipelines, mmcv " + mmcv.__version__,
        **sampling_reference(mods["loading"]),
        **crop_reference(mods["augmentations"]),
    }
    (HERE / "sampling.json").write_text(json.dumps(reference, separators=(",", ":")) + "\n")

    video = HERE / "pipeline.avi"
    if not video.exists():
        make_video(video)
    frames = decode_all(video)
    arrays: dict[str, np.ndarray] = {"num_frames": np.array(len(frames))}
    for name, case in FULL_CASES.items():
        arrays[f"{name}/tensor"] = official_tensor(mods, frames, case)
    rng = np.random.default_rng(0)
    for name, case in PRINT_CASES.items():
        tensor = official_tensor(mods, frames, case)  # (crops * clips, 3, T, crop, crop)
        positions = np.stack([rng.integers(0, size, SAMPLES) for size in tensor.shape], axis=1).astype(np.int16)
        arrays[f"{name}/shape"] = np.array(tensor.shape)
        arrays[f"{name}/means"] = tensor.astype(np.float64).mean(axis=(3, 4))  # per view, channel, frame
        arrays[f"{name}/positions"] = positions
        arrays[f"{name}/values"] = tensor[tuple(positions.T)]
    for name, case in {**FULL_CASES, **PRINT_CASES}.items():
        arrays[f"{name}/case"] = np.array(json.dumps(case))
    np.savez_compressed(HERE / "pipeline.npz", **arrays)
    print("wrote", HERE / "sampling.json", HERE / "pipeline.npz", "frames:", len(frames))


if __name__ == "__main__":
    main()
