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
video (issue 9 asks for at most 10% more), the decoding time per video (videos that fail to
decode are left out of it and counted; the end-to-end run reports them), and the peak resident
memory: of this process, or with ``--decoders processes`` the highest sampled sum over this
process and every process under it (the decoders and their server; pages they share count in
each, so it is an upper bound). It also reports the CPU seconds (all threads) the model and the decoding
each take per video, and from them the best ratio any overlap could reach on these cores:
``max(1, (model CPU + decode CPU) / (cores x model seconds))``. When the model keeps every core
busy, decoding cannot hide behind it: its CPU time has to come out of the model's cores. Both
model and end-to-end figures are totals over the same views divided by the number of videos; the
model's is the mean of 1 and 4, so a shared machine's drift during the run weighs on both sides
alike.

``--opencv`` and ``--decode-every-frame`` patch the decoders in this process; decoder processes
import this script afresh, and apply them too from the environment (``VSWIN_E2E_DECODING``) the
script sets before any of them starts.

A usage mistake (a folder without videos, a bad option value, ``--device cuda`` without a GPU)
is one line, ``error: ...``, and exit status 2; exit status 1 means the 10% criterion failed or
a video failed.
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
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vswin_cli import pyav_capture, video  # noqa: E402
from vswin_cli.checkpoints import save_native  # noqa: E402
from vswin_cli.engine import Engine, RunOptions  # noqa: E402
from vswin_cli.errors import VswinError  # noqa: E402
from vswin_cli.inputs import discover  # noqa: E402
from vswin_cli.loading import load_model  # noqa: E402
from vswin_cli.model import swin_t  # noqa: E402
from vswin_cli.protocol import KINETICS  # noqa: E402
from tests.parity import weights as parity_weights  # noqa: E402
from benchmarks.usage import batch_size, positive_float, positive_int, usage_error  # noqa: E402

# The decoder choices of this run, for decoder processes: "opencv" and/or "every-frame".
DECODING_ENV = "VSWIN_E2E_DECODING"


def use_decoding(choices: set[str]) -> None:
    """Patch this process's decoders: "opencv" as for a file PyAV cannot open, "every-frame" with
    no presentation order (so no frame is left undecoded: the baseline before skipping)."""
    if "opencv" in choices:
        video.open_pyav = lambda path, capture, threads=0: None
    if "every-frame" in choices:
        pyav_capture._presentation_order = lambda path, stream: None


# Decoder processes (forkserver or spawn) import this script as __mp_main__ before they decode,
# with the environment main() set before the first of them started: patch them alike.
use_decoding(set(filter(None, os.environ.get(DECODING_ENV, "").split(","))))


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
            raise VswinError("OpenCV cannot write mp4v videos here; pass --folder with videos")
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
        raise VswinError("--codec h264 needs ffmpeg on PATH")
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


def tree_rss_mib(root: int) -> float | None:
    """Resident memory of ``root`` and every process under it, summed (Linux /proc), or None.

    Decoder processes are the children of a forkserver, itself a child of ``root``: getrusage
    sees neither while they run, so the tree is walked through every process's parent id.
    """
    parents: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    # "pid (comm) state ppid ...": comm may hold spaces and parentheses
                    parents[int(entry)] = int(stat.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    tree, frontier = {root}, [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
        tree.update(frontier)
    pages = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm", "rb") as statm:
                pages += int(statm.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class TreePeak:
    """The highest :func:`tree_rss_mib` of this process while in the ``with`` block, sampled every
    ``interval`` s in a thread (a shorter peak can be missed); None where /proc is not there.
    Off (no thread, no /proc reads taking the model's CPU) unless ``enabled``."""

    def __init__(self, enabled: bool, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = tree_rss_mib(os.getpid()) if enabled else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _update(self) -> None:
        now = tree_rss_mib(os.getpid())
        if now is not None and self.peak is not None:
            self.peak = max(self.peak, now)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._update()

    def __enter__(self) -> "TreePeak":
        if self.peak is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            self._update()


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except VswinError as error:  # vswin's own usage errors (no GPU, bad model, missing folder...)
        return usage_error(str(error))


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, help="videos to use (default: write --videos short 720p clips)")
    parser.add_argument("--videos", type=positive_int, default=4, help="how many videos to write (default 4)")
    parser.add_argument("--seconds", type=positive_float, default=4.0, help="length of the written videos (default 4 s)")
    parser.add_argument("--codec", choices=("mp4v", "h264"), default="mp4v",
                        help="codec of the written videos (default mp4v; h264 needs ffmpeg)")
    parser.add_argument("--model", help="model reference (default: generated Swin-T weights)")
    parser.add_argument("--clips", type=positive_int, default=None,
                        help="clips per video (default 1; a uniform-sampling model, as Something-Something v2's, "
                             "takes none: its protocol's one clip)")
    parser.add_argument("--crops", type=int, choices=(1, 3), default=1)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--batch-size", type=batch_size, default="auto")
    parser.add_argument("--decode-workers", type=positive_int, default=None)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--decoders", default="auto", choices=("auto", "threads", "processes"),
                        help="where videos are decoded (default auto: threads)")
    parser.add_argument("--opencv", action="store_true",
                        help="decode with OpenCV, as for a file PyAV cannot open (default: PyAV, as vswin does)")
    parser.add_argument("--decode-every-frame", action="store_true",
                        help="decode every frame, as before frames no kept frame needs were left undecoded (a baseline)")
    args = parser.parse_args(argv)
    choices = {name for name, wanted in (("opencv", args.opencv), ("every-frame", args.decode_every_frame)) if wanted}
    os.environ[DECODING_ENV] = ",".join(sorted(choices))  # before any decoder process starts
    use_decoding(choices)
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
        if not folder.is_dir():
            return usage_error(f"--folder {folder}: no such folder")
        items = discover([folder]).videos
        if not items:
            return usage_error(f"no videos in {folder}")
        model = load_model(args.model or str(generated_checkpoint(work)))
        # --clips only when given or when the model samples clips (the script's 1 clip by default);
        # a uniform-sampling model (Something-Something v2) takes none: its protocol's one clip.
        clips = args.clips
        if clips is None and (model.protocol or KINETICS).sampling == "clips":
            clips = 1
        options = RunOptions(clips=clips, crops=args.crops, precision=args.precision, batch_size=args.batch_size,
                             device=args.device,
                             decoders=args.decoders,
                             decode_workers=args.decode_workers)
        engine = Engine(model, options)
        in_processes = engine.decodes_in_processes(len(items))
        views_per_video = engine.protocol.num_clips * engine.protocol.num_crops
        print(f"{len(items)} videos from {folder}; {views_per_video} views each "
              f"({engine.protocol.num_clips} clips x {engine.protocol.num_crops} crops); "
              f"precision {engine.dtype}, batch {engine.batch_size}, {args.threads} threads, device {engine.device}, "
              f"decoding in {'processes' if in_processes else 'threads'}",
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

        # 2. decoding + preprocessing alone, with the FFmpeg threads the run gives each decoder.
        # A video that fails is left out of these figures (counted): the end-to-end run below
        # reports it as a failure, as the engine's own handling does.
        decode, decode_cpu_total, undecodable = [], 0.0, []
        _, _, threads = engine.decoding_plan(len(items))
        for item in items:
            start, start_cpu = time.perf_counter(), time.process_time()
            prepared = engine.prepare(item, threads)
            list(prepared.views)
            if prepared.record.status != "ok":
                undecodable.append(f"{item.path}: {prepared.record.error}")
                continue
            decode.append(time.perf_counter() - start)
            decode_cpu_total += time.process_time() - start_cpu
        if not decode:
            return usage_error(f"none of the {len(items)} videos in {folder} could be decoded ({undecodable[0]})")
        if undecodable:
            print(f"serial decode: {len(undecodable)} of {len(items)} videos failed and are left out of its figures "
                  f"(first: {undecodable[0]})", file=sys.stderr)
        decode_cpu = decode_cpu_total / len(decode)

        # 3. end to end; with decoder processes, their memory is sampled as they run
        with TreePeak(enabled=in_processes) as tree:
            start = time.perf_counter()
            outcomes = list(engine.run(items))
            total = time.perf_counter() - start
        failed = [o.record.path for o in outcomes if o.record.status != "ok"]

        # 4. the model alone again: a shared machine drifts, so the reference is the mean of the
        # runs on either side of the end-to-end run
        model_after = model_alone_per_video()

    model_per_video = (model_before + model_after) / 2
    # Per video that went through: a failed one gives the model nothing to do, and counting it
    # would flatter the ratio (the model alone ran every video's views).
    done = len(items) - len(failed)
    if not done:
        print(f"end to end: every video failed: {failed}")
        return 1
    e2e_per_video = total / done
    ratio = e2e_per_video / model_per_video
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    model_cpu_per_video = statistics.mean(model_cpu)
    best_ratio = max(1.0, (model_cpu_per_video + decode_cpu) / (cores * model_per_video))
    own_peak = peak_rss_mib()
    if not in_processes:
        peak = f"{own_peak:.0f} MiB"
    elif tree.peak is None:  # no /proc: the decoder processes cannot be seen
        peak = f"{own_peak:.0f} MiB (this process only)"
    else:
        peak = f"{max(own_peak, tree.peak):.0f} MiB"
    print()
    print("| videos | views/video | videos/s | s/video end to end | s/video model alone | ratio | "
          "s/video decode+preprocess (serial) | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {len(items)} | {views_per_video} | {done / total:.3f} | {e2e_per_video:.3f} | "
          f"{model_per_video:.3f} | {ratio:.2f} | {statistics.mean(decode):.3f} | {peak} |")
    print(f"model alone: {model_before:.3f} s/video before the end-to-end run, {model_after:.3f} after")
    if in_processes and tree.peak is not None:
        print(f"peak RSS: this process {own_peak:.0f} MiB; summed with its decoder processes {tree.peak:.0f} MiB "
              f"(sampled every {tree.interval:g} s; pages they share counted in each)")
    print(f"CPU s/video (all threads): model {model_cpu_per_video:.3f}, decode+preprocess {decode_cpu:.3f}; "
          f"{cores} cores: the best ratio any overlap can reach here is {best_ratio:.2f}")
    print()
    verdict = "PASS" if ratio <= 1.10 else "FAIL"
    print(f"end to end within 10% of the model time: {verdict} ({(ratio - 1) * 100:+.0f}%)"
          + (f"; failed videos: {failed}" if failed else ""))
    return 0 if ratio <= 1.10 and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
