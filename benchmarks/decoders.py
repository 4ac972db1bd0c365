"""OpenCV against PyAV on the same files: what decoding with PyAV (decord's pixels) costs.

    python benchmarks/decoders.py                     # 4 short 720p h264 videos (needs ffmpeg)
    python benchmarks/decoders.py --folder my_videos/

video.py decodes every file PyAV opens with PyAV, and the rest with OpenCV (which describes every
file). This times ``read_video`` with the Kinetics plan (4 clips x 32 frames, resized as the
engine does) on each file through PyAV (the default) and through OpenCV (forced, as for a file
PyAV cannot open), interleaved and repeated, and prints the median seconds and process CPU
seconds per video and the ratio. On untagged 8-bit files both give the same pixels; the work is
the same, so the ratio is the price of the PyAV path. glibc's malloc keeps freed memory, as the
engine sets it (``allocator.py``; without it each PyAV frame converted to RGB is a fresh mmap and
its page faults: about +10% wall and +20% CPU for PyAV, ``--malloc-default``).

``--folder`` takes the videos vswin would find there (other files are passed over); a video
either path cannot read is left out, and counted. A usage mistake is one line, ``error: ...``,
and exit status 2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from end_to_end import reencode_h264, write_videos  # noqa: E402
from benchmarks.usage import positive_float, positive_int, usage_error  # noqa: E402
from vswin_cli import allocator, video  # noqa: E402
from vswin_cli.errors import VswinError  # noqa: E402
from vswin_cli.inputs import discover  # noqa: E402
from vswin_cli.protocol import KINETICS  # noqa: E402
from vswin_cli.sampling import plan_clips  # noqa: E402
from vswin_cli.transforms import short_side_resizer  # noqa: E402

# "pyav": the default; "opencv": as for a file PyAV cannot open.
DECODERS = {"opencv": lambda path, capture, threads=0: None, "pyav": video.open_pyav}


def read_all(paths: list[Path], decoder: str) -> tuple[float, float]:
    """Wall and CPU seconds per video to read ``paths`` with ``decoder``."""
    chosen = video.open_pyav
    video.open_pyav = DECODERS[decoder]
    resize = short_side_resizer(KINETICS)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for path in paths:
            video.read_video(path, lambda info: plan_clips(info.frames, info.timestamps, info.fps, KINETICS), resize)
        return (time.perf_counter() - wall) / len(paths), (time.process_time() - cpu) / len(paths)
    finally:
        video.open_pyav = chosen


def readable(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """``paths`` both decoders read (a first read of each, which also warms the file cache and the
    libraries), and why the others could not be read."""
    kept, failed = [], []
    for path in paths:
        try:
            for name in DECODERS:
                read_all([path], name)
        except VswinError as error:  # vswin's VideoError: a file neither path can use
            failed.append(str(error))
        else:
            kept.append(path)
    return kept, failed


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except VswinError as error:  # a missing folder, no ffmpeg to write the default videos...
        return usage_error(str(error))


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, help="videos to use (default: write --videos short 720p h264 clips)")
    parser.add_argument("--videos", type=positive_int, default=4)
    parser.add_argument("--seconds", type=positive_float, default=4.0)
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--malloc-default", action="store_true", help="leave glibc's malloc as it comes (the engine does not)")
    args = parser.parse_args(argv)
    if not args.malloc_default:
        allocator.keep_freed_memory()
    with tempfile.TemporaryDirectory() as scratch:
        if args.folder is not None:
            if not args.folder.is_dir():
                return usage_error(f"--folder {args.folder}: no such folder")
            # as the engine finds them: README.txt and the like are not videos
            paths = [item.path for item in discover([args.folder]).videos]
            if not paths:
                return usage_error(f"no videos in {args.folder}")
        else:
            paths = write_videos(Path(scratch), args.videos, args.seconds, 1280, 720, 30.0)
            reencode_h264(paths)
        paths, failed = readable(paths)
        if not paths:
            return usage_error(f"no video could be read ({failed[0]})")
        if failed:
            print(f"{len(failed)} video(s) left out, unreadable (first: {failed[0]})", file=sys.stderr)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in DECODERS}
        for _ in range(args.repeats):
            for name in DECODERS:
                times[name].append(read_all(paths, name))
    print(f"{len(paths)} videos, Kinetics plan (4 clips x 32 frames), median of {args.repeats}")
    medians = {}
    for name, runs in times.items():
        medians[name] = (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        print(f"  {name:7s} {medians[name][0]:.3f} s/video wall  {medians[name][1]:.3f} s/video CPU")
    print(f"  pyav / opencv: {medians['pyav'][0] / medians['opencv'][0]:.2f}x wall, "
          f"{medians['pyav'][1] / medians['opencv'][1]:.2f}x CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
