"""End-to-end throughput of the engine on a folder of videos: is decoding hidden behind the model?

    python benchmarks/end_to_end.py                          # 4 short 720p videos, 1 clip x 1 crop
    python benchmarks/end_to_end.py --clips 4 --crops 3      # the full Kinetics protocol
    python benchmarks/end_to_end.py --folder my_videos/ --model swin-t-k400

Without ``--folder`` it writes short 1280x720 videos (moving shapes, OpenCV's mp4v; with
``--codec h264``, re-encoded by ffmpeg's libx264 as phones and most downloads are) into a
temporary folder; without ``--model`` it writes a native safetensors checkpoint of Swin-T with
the parity tests' generated weights and loads it the way the CLI does. It then measures, in
this order:

1. model alone: the same number of views as the videos will give, random uint8 (32, 224, 224, 3)
   crops (as the engine queues them), batched and in the precision the engine uses;
2. decode + preprocess alone: ``Engine.prepare`` on every video, one after the other;
3. end to end: ``Engine.run`` over the folder (decoding in worker threads while the model runs);
4. model alone again, as in 1.

It reports videos per second, seconds per video end to end against the model's seconds per
video (issue 9 asks for at most 10% more), the decoding time per video, and the peak resident
memory of the process. It also reports the CPU seconds (all threads) the model and the decoding
each take per video, and from them the best ratio any overlap could reach on these cores:
``max(1, (model CPU + decode CPU) / (cores x model seconds))``. When the model keeps every core
busy, decoding cannot hide behind it: its CPU time has to come out of the model's cores. Both
model and end-to-end figures are totals over the same views divided by the number of videos; the
model's is the mean of 1 and 4, so a shared machine's drift during the run weighs on both sides
alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vswin_cli import pyav_capture, video  # noqa: E402
from vswin_cli.checkpoints import save_native  # noqa: E402
from vswin_cli.engine import Engine, RunOptions  # noqa: E402
from vswin_cli.inputs import discover  # noqa: E402
from vswin_cli.loading import load_model  # noqa: E402
from vswin_cli.model import swin_t  # noqa: E402
from tests.parity import weights as parity_weights  # noqa: E402


def write_videos(folder: Path, count: int, seconds: float, width: int, height: int, fps: float) -> list[Path]:
    """Short videos of moving shapes on a drifting gradient (compressible, not noise)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    yy, xx = np.mgrid[0:height, 0:width]
    for v in range(count):
        path = folder / f"clip_{v:02d}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise SystemExit("OpenCV cannot write mp4v videos here; pass --folder with videos")
        for f in range(int(seconds * fps)):
            frame = np.empty((height, width, 3), dtype=np.uint8)
            frame[..., 0] = (xx + 4 * f + 50 * v) % 256
            frame[..., 1] = (yy + 2 * f) % 256
            frame[..., 2] = 128
            cx, cy = (100 + 9 * f + 60 * v) % (width - 120), (80 + 5 * f) % (height - 120)
            frame[cy : cy + 120, cx : cx + 120] = (250, (250 - 20 * v) % 256, 30)
            writer.write(frame)
        writer.release()
        paths.append(path)
    return paths


def reencode_h264(paths: list[Path]) -> None:
    """Re-encode each video in place with libx264 (CRF 23, yuv420p: ffmpeg's defaults for the web)."""
    if shutil.which("ffmpeg") is None:
        raise SystemExit("--codec h264 needs ffmpeg on PATH")
    for path in paths:
        encoded = path.with_suffix(".h264.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-c:v", "libx264", "-crf", "23",
                        "-pix_fmt", "yuv420p", str(encoded)], check=True)
        encoded.replace(path)


def generated_checkpoint(folder: Path) -> Path:
    return save_native(parity_weights.load_generated(swin_t()), folder / "swin_t_generated.safetensors")


def peak_rss_mib() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 1024 if sys.platform != "darwin" else usage / 2**20  # KiB on Linux, bytes on macOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, help="videos to use (default: write --videos short 720p clips)")
    parser.add_argument("--videos", type=int, default=4, help="how many videos to write (default 4)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the written videos (default 4 s)")
    parser.add_argument("--codec", choices=("mp4v", "h264"), default="mp4v",
                        help="codec of the written videos (default mp4v; h264 needs ffmpeg)")
    parser.add_argument("--model", help="model reference (default: generated Swin-T weights)")
    parser.add_argument("--clips", type=int, default=1)
    parser.add_argument("--crops", type=int, choices=(1, 3), default=1)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--batch-size", default="auto")
    parser.add_argument("--decode-workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--decoders", default="auto", choices=("auto", "threads", "processes"),
                        help="where videos are decoded (default auto: threads)")
    parser.add_argument("--opencv", action="store_true",
                        help="decode with OpenCV, as for a file PyAV cannot open (default: PyAV, as vswin does)")
    parser.add_argument("--decode-every-frame", action="store_true",
                        help="decode every frame, as before frames no kept frame needs were left undecoded (a baseline)")
    args = parser.parse_args(argv)
    if args.opencv:
        video.open_pyav = lambda path, capture, threads=0: None
    if args.decode_every_frame:
        pyav_capture._presentation_order = lambda path, stream: None  # no order: nothing is skipped
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="vswin-e2e-") as tmp:
        work = Path(tmp)
        if args.folder is None:
            written = write_videos(work / "videos", args.videos, args.seconds, 1280, 720, 30.0)
            if args.codec == "h264":
                reencode_h264(written)
            folder = work / "videos"
        else:
            folder = args.folder
        items = discover([folder]).videos
        if not items:
            raise SystemExit(f"no videos in {folder}")
        model = load_model(args.model or str(generated_checkpoint(work)))
        batch = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
        options = RunOptions(clips=args.clips, crops=args.crops, precision=args.precision, batch_size=batch, device=args.device,
                             decoders=args.decoders,
                             decode_workers=args.decode_workers)
        engine = Engine(model, options)
        views_per_video = engine.protocol.num_clips * engine.protocol.num_crops
        print(f"{len(items)} videos from {folder}; {views_per_video} views each "
              f"({engine.protocol.num_clips} clips x {engine.protocol.num_crops} crops); "
              f"precision {engine.dtype}, batch {engine.batch_size}, {args.threads} threads, device {engine.device}, "
              f"decoding in {'processes' if engine.decodes_in_processes(len(items)) else 'threads'}",
              file=sys.stderr)

        # 1. the model alone, on as many views as the videos will give
        size = engine.protocol.crop_size
        view = torch.randint(0, 256, (engine.protocol.clip_len, size, size, 3), dtype=torch.uint8)  # as the engine queues them
        engine._run_views([view])  # warm-up: caches, kernel choice
        total_views = views_per_video * len(items)

        model_cpu: list[float] = []

        def model_alone_per_video() -> float:
            """Seconds per video for the model alone: the total over the same views, as end to end."""
            start, start_cpu = time.perf_counter(), time.process_time()
            for done in range(0, total_views, engine.batch_size):
                engine._run_views([view] * min(engine.batch_size, total_views - done))
            model_cpu.append((time.process_time() - start_cpu) / len(items))
            return (time.perf_counter() - start) / len(items)

        model_before = model_alone_per_video()

        # 2. decoding + preprocessing alone, with the FFmpeg threads the run gives each decoder
        decode = []
        _, _, threads = engine.decoding_plan(len(items))
        start_cpu = time.process_time()
        for item in items:
            start = time.perf_counter()
            prepared = engine.prepare(item, threads)
            list(prepared.views)
            decode.append(time.perf_counter() - start)
            if prepared.record.status != "ok":
                raise SystemExit(f"{item.path}: {prepared.record.error}")
        decode_cpu = (time.process_time() - start_cpu) / len(items)

        # 3. end to end
        start = time.perf_counter()
        outcomes = list(engine.run(items))
        total = time.perf_counter() - start
        failed = [o.record.path for o in outcomes if o.record.status != "ok"]

        # 4. the model alone again: a shared machine drifts, so the reference is the mean of the
        # runs on either side of the end-to-end run
        model_after = model_alone_per_video()

    model_per_video = (model_before + model_after) / 2
    e2e_per_video = total / len(items)
    ratio = e2e_per_video / model_per_video
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    model_cpu_per_video = statistics.mean(model_cpu)
    best_ratio = max(1.0, (model_cpu_per_video + decode_cpu) / (cores * model_per_video))
    print()
    print("| videos | views/video | videos/s | s/video end to end | s/video model alone | ratio | "
          "s/video decode+preprocess (serial) | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {len(items)} | {views_per_video} | {len(items) / total:.3f} | {e2e_per_video:.3f} | "
          f"{model_per_video:.3f} | {ratio:.2f} | {statistics.mean(decode):.3f} | {peak_rss_mib():.0f} MiB |")
    print(f"model alone: {model_before:.3f} s/video before the end-to-end run, {model_after:.3f} after")
    print(f"CPU s/video (all threads): model {model_cpu_per_video:.3f}, decode+preprocess {decode_cpu:.3f}; "
          f"{cores} cores: the best ratio any overlap can reach here is {best_ratio:.2f}")
    print()
    verdict = "PASS" if ratio <= 1.10 else "FAIL"
    print(f"end to end within 10% of the model time: {verdict} ({(ratio - 1) * 100:+.0f}%)"
          + (f"; failed videos: {failed}" if failed else ""))
    return 0 if ratio <= 1.10 and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
