"""Decoding alone: how many videos per second the engine's decoders prepare, without the model.

    python benchmarks/decode_throughput.py                       # 8 short 720p h264 videos, 1, 2, 4 decoders
    python benchmarks/decode_throughput.py --workers 8 --folder my_videos/ --clips 4 --crops 3

When the model is faster than the decoders (a GPU), this is the end-to-end rate. For each number
of decoder threads it times ``Engine.prepare`` over the folder as the engine runs it (the
engine's own FFmpeg thread count per decoder: a share of the cores when several decoders run),
against the same with FFmpeg's default of one thread per core in every decoder, and against the
engine's settings with every frame decoded (as before frames that no kept frame needs were left
undecoded: ``PyAVCapture.decode_only``), interleaved and repeated, and prints medians and ratios.
The CPU time of the process per video is printed too: on a CPU the model needs the cores, so a
decoder's CPU time, not its speed, is what it costs.

A usage mistake (a folder without videos, a bad option value) or a video that cannot be decoded
is one line, ``error: ...``, and exit status 2.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from end_to_end import reencode_h264, write_videos  # noqa: E402
from benchmarks.usage import positive_int, usage_error  # noqa: E402
from vswin_cli import prefetch, pyav_capture  # noqa: E402
from vswin_cli.checkpoints import save_native  # noqa: E402
from vswin_cli.engine import Engine, RunOptions  # noqa: E402
from vswin_cli.errors import VswinError  # noqa: E402
from vswin_cli.inputs import discover  # noqa: E402
from vswin_cli.loading import load_model  # noqa: E402
from vswin_cli.model import SwinConfig, VideoSwin  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except VswinError as error:  # a missing folder, no ffmpeg to write the default videos...
        return usage_error(str(error))


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, help="videos to use (default: write --videos short 720p clips)")
    parser.add_argument("--videos", type=positive_int, default=8)
    parser.add_argument("--codec", choices=("mp4v", "h264"), default="h264", help="of the written videos (h264 needs ffmpeg)")
    parser.add_argument("--workers", type=positive_int, nargs="+", default=[1, 2, 4], help="decoder thread counts to try")
    parser.add_argument("--clips", type=positive_int, default=1)
    parser.add_argument("--crops", type=int, choices=(1, 3), default=1)
    parser.add_argument("--repeats", type=positive_int, default=3)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="vswin-decode-") as tmp:
        work = Path(tmp)
        folder = args.folder
        if folder is not None and not folder.is_dir():
            return usage_error(f"--folder {folder}: no such folder")
        if folder is None:
            folder = work / "videos"
            written = write_videos(folder, args.videos, 4.0, 1280, 720, 30.0)
            if args.codec == "h264":
                reencode_h264(written)
        items = discover([folder]).videos
        if not items:
            return usage_error(f"no videos in {folder}")
        # Decoding does not touch the model: a tiny one with the default (Kinetics) protocol.
        tiny = VideoSwin(SwinConfig(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), num_classes=4))
        model = load_model(str(save_native(tiny, work / "tiny.safetensors")))
        engine = Engine(model, RunOptions(clips=args.clips, crops=args.crops, device="cpu"))
        print(f"{len(items)} videos from {folder}, {args.clips} clips x {args.crops} crops, "
              f"{os.cpu_count()} cores, decoding in threads", file=sys.stderr)

        order = pyav_capture._presentation_order
        timings: dict[tuple[int, int, bool], list[tuple[float, float]]] = {}
        for _ in range(args.repeats):
            for workers in args.workers:
                engine_threads = prefetch.decoder_threads(workers)
                for threads, every in sorted({(engine_threads, False), (0, False), (engine_threads, True)}, reverse=True):
                    # every frame decoded: no presentation order, so no frame is left undecoded
                    pyav_capture._presentation_order = (lambda path, stream: None) if every else order
                    start, cpu = time.perf_counter(), cpu_seconds()
                    prepared = prefetch.in_threads(functools.partial(engine.prepare, decoder_threads=threads), items, workers)
                    for video in prepared:
                        if video.record.status != "ok":
                            return usage_error(f"{video.record.path}: {video.record.error} (leave it out of --folder)")
                        list(video.views)
                    timings.setdefault((workers, threads, every), []).append(
                        ((time.perf_counter() - start) / len(items), (cpu_seconds() - cpu) / len(items)))
                pyav_capture._presentation_order = order

    print()
    print("| decoders | FFmpeg threads each | frames decoded | videos/s | CPU s/video | vs FFmpeg default | vs every frame |")
    print("|---|---|---|---|---|---|---|")
    cores = os.cpu_count()
    for workers in args.workers:
        engine_threads = prefetch.decoder_threads(workers)
        default_wall = statistics.median(w for w, _ in timings[(workers, 0, False)])
        every_wall = statistics.median(w for w, _ in timings[(workers, engine_threads, True)])
        for threads, every in sorted({(engine_threads, False), (0, False), (engine_threads, True)}, reverse=True):
            wall = statistics.median(w for w, _ in timings[(workers, threads, every)])
            cpu = statistics.median(c for _, c in timings[(workers, threads, every)])
            engine_uses = threads == engine_threads and not every
            label = (str(threads) if threads else f"default ({cores})") + (" (engine)" if engine_uses else "")
            decoded = "every frame" if every else "needed"
            print(f"| {workers} | {label} | {decoded} | {1 / wall:.2f} | {cpu:.3f} | {default_wall / wall:.2f}x | {every_wall / wall:.2f}x |")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    sys.exit(main())
