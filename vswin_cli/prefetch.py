"""Decode the next videos while the model works: in threads, or in worker processes.

Both keep the input order and hold at most ``workers + 1`` prepared videos at once, so memory
does not grow with the number of videos.

Threads are the default everywhere. PyAV, OpenCV and NumPy release the GIL, and a worker's output is
uint8 crops (normalisation happens on the model's device), so a thread's work is mostly outside
Python. On an H200 with 16 cores, 8 threads fed 17.7 videos/s (Kinetics 4x3 views, bf16) where
the model alone takes 23/s; 4 threads gave 13.8, 14 gave 14.7 (benchmarks/README.md).

Processes (``RunOptions(decoders="processes")``) isolate the decoder: a worker that dies (a
decoder crash, the OOM killer) takes its pool down with every video then in flight; those videos
are retried one at a time in a single-worker pool, the ones that succeed alone keep their results,
the one that kills its process again becomes an error record, and the run goes on with a fresh
pool. The price is start-up and a pipe: on the same H200 they fed only 4.4 videos/s, so they are
opt-in. Views cross the pipe as NumPy arrays (torch tensors would go through shared memory,
whose size containers often cap). Workers import the calling script, so a script must make the
call under ``if __name__ == "__main__":``; without it the run stops with that advice.
"""

from __future__ import annotations

import collections
import concurrent.futures as futures
import multiprocessing
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import torch

from . import crash_markers
from .errors import VswinError
from .inputs import InputVideo

if TYPE_CHECKING:
    from .engine import Engine, PreparedVideo


def default_workers(processes: bool, gpu: bool) -> int:
    """Decoders for a run: on the CPU a few (the model needs the cores); for a GPU half the cores, at most 8."""
    cpus = os.cpu_count() or 2
    if processes:  # leave a core to the model's thread and one to the system
        return max(1, min(16, cpus - 2))
    return max(1, min(8 if gpu else 4, cpus // 2))


def decoder_threads(workers: int) -> int:
    """FFmpeg threads per file when ``workers`` decoders run at once: a share of the cores each.

    0 (FFmpeg's default: one per core) for a single decoder. Several decoders each starting one
    thread per core crowd the cores (8 decoders on 16 cores: 128 threads): on 2 cores, two
    decoders of one thread each decoded 15-20% more videos per second than with two threads
    each (benchmarks/README.md).
    """
    if workers <= 1:
        return 0
    return max(1, (os.cpu_count() or 1) // workers)


def in_threads(prepare: Callable[[InputVideo], "PreparedVideo"], items: Iterable[InputVideo], workers: int) -> Iterator["PreparedVideo"]:
    """``prepare(item)`` for each item, in order, ``workers`` at a time in threads."""
    pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vswin-decode")
    try:
        pending: collections.deque[futures.Future[PreparedVideo]] = collections.deque()
        iterator = iter(items)
        for item in iterator:
            pending.append(pool.submit(prepare, item))
            if len(pending) > workers:
                break
        while pending:
            yield pending.popleft().result()
            # Only once that video is taken: the ones being prepared and the one taken make workers + 1.
            next_item = next(iterator, None)
            if next_item is not None:
                pending.append(pool.submit(prepare, next_item))
    finally:
        # Stopped early (Ctrl-C, an error): videos not yet started are dropped, not decoded first.
        pool.shutdown(wait=False, cancel_futures=True)


# The error of a video that killed its decoder process (here, or in an earlier run).
DECODER_CRASHED = "the decoder crashed on this video (its worker process died)"
# The error of a video an earlier run died decoding, where no worker process could start to try it apart.
NOT_DECODED_APART = ("an earlier run crashed while decoding this video; it is retried only in a "
                     'worker process (decoders="processes"), which could not start here')


def remembering_crashes(preparer: "Engine", decoder_threads: int = 0) -> Callable[[InputVideo], "PreparedVideo"]:
    """``preparer.prepare`` for threads, which remembers a decoder crash for the next run.

    In threads a decoder crash ends the whole run, and a rerun (``--resume``) would meet the same
    video and crash again, for ever. So each video is decoded under a crash marker
    (crash_markers.py); a video whose marker an earlier run left behind (it died decoding it) is
    decoded apart in a worker process, where a crash costs only that video. Its markers are
    forgotten once it decodes there; one that crashes there too keeps them for later runs.
    """
    folder = crash_markers.local_folder()

    def marked(views: Iterable[torch.Tensor], key: str) -> Iterator[torch.Tensor]:
        with crash_markers.decoding(folder, key):
            yield from views

    def here(item: InputVideo, key: str) -> "PreparedVideo":
        prepared = preparer.prepare(item, decoder_threads)
        if isinstance(prepared.views, Iterator):  # sliding windows, decoded as the model takes them: under the marker too
            prepared.views = marked(prepared.views, key)
        return prepared

    def prepare(item: InputVideo) -> "PreparedVideo":
        key = crash_markers.key_of(os.path.abspath(item.path))
        with crash_markers.decoding(folder, key) as deaths:
            if not deaths:
                return here(item, key)
        prepared = _prepare_apart(preparer, item, decoder_threads)
        if prepared.record.error in (DECODER_CRASHED, NOT_DECODED_APART):
            return prepared  # crashed again, or not tried: its markers stay, for a run that can try it apart
        crash_markers.forget(folder, key)
        if prepared.views_left_behind:
            # The worker only proved the file decodes (``_prepare_in_worker``): read it here.
            with crash_markers.decoding(folder, key):
                return here(item, key)
        return prepared

    return prepare


def _prepare_apart(preparer: "Engine", item: InputVideo, decoder_threads: int) -> "PreparedVideo":
    alone = in_processes(preparer.without_model(), [item], 1, decoder_threads)
    try:
        return next(alone)
    except VswinError:  # no worker could start (_NEVER_STARTED, _IN_DAEMON): do not risk the run
        return preparer.failed(item, NOT_DECODED_APART)
    finally:
        alone.close()


# --- worker processes -------------------------------------------------------------------------

_preparer: "Engine | None" = None
_decoder_threads = 0

# Workers start by importing the caller's script (spawn and forkserver do); one without a
# ``__main__`` guard runs its classify call again in every worker, and no worker ever starts.
_NEVER_STARTED = (
    "the decoder processes exited while starting, before any video: a script that calls vswin_cli with "
    'decoders="processes" must make that call under `if __name__ == "__main__":` (each worker imports the '
    'script), or use decoders="threads"'
)

# multiprocessing refuses to start processes from a daemonic one (a multiprocessing.Pool's worker).
_IN_DAEMON = (
    "decoder worker processes cannot start inside a daemonic process (a multiprocessing.Pool worker, for one): "
    'use decoders="threads" there'
)


def _start_worker(preparer: "Engine", threads: int, started: "multiprocessing.synchronize.Event", parent: int) -> None:
    global _preparer, _decoder_threads
    import cv2

    # Many decoders share the machine: one thread each, not one pool of all cores each.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _preparer, _decoder_threads = preparer, threads
    threading.Thread(target=_exit_after, args=(parent,), name="vswin-parent-watch", daemon=True).start()
    started.set()


def _exit_after(parent: int) -> None:
    """End this worker once the run that started it is gone. Killed outright (SIGKILL, the OOM
    killer), a run leaves its workers waiting for work for ever, holding their memory and the run's
    stdout and stderr: whoever reads those through a pipe would wait for ever too."""
    started = _start_time(parent)
    if started is None and _start_time(os.getpid()) is None:  # no /proc to read: only whether the pid is there
        while _exists(parent):
            time.sleep(1.0)
    else:
        while started is not None and _start_time(parent) == started:
            time.sleep(1.0)
    os._exit(1)


def _start_time(pid: int) -> bytes | None:
    """When process ``pid`` started, from /proc (Linux): a pid taken over by another process, or a
    process that has ended (a zombie), no longer gives the same value. None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
    except (OSError, IndexError):
        return None
    return None if fields[0] in (b"Z", b"X") else fields[19]  # the state (field 3) and starttime (field 22)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's (not ours to signal), or no way to tell: it may be there
    return True


def _booting_worker() -> bool:
    """Whether this is a worker process still importing its parent's script (see ``_NEVER_STARTED``)."""
    # The flag multiprocessing itself checks before refusing to start processes from such a worker.
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def _prepare_in_worker(item: InputVideo) -> "PreparedVideo":
    assert _preparer is not None, "worker not started"
    prepared = _preparer.prepare(item, _decoder_threads)
    if isinstance(prepared.views, Iterator):
        # Sliding windows, as many as the video is long: sent back, they would all be held at once.
        # The worker decodes them all (so a decoder crash kills it, not the run) and sends back
        # none; the caller reads the file itself (``remembering_crashes``).
        for _ in prepared.views:
            pass
        prepared.views = []
        prepared.views_left_behind = prepared.record.status == "ok"
        return prepared
    # NumPy arrays pickle into the pipe; torch tensors would go through shared memory.
    prepared.views = [view.numpy() for view in prepared.views]
    return prepared


def _received(prepared: "PreparedVideo") -> "PreparedVideo":
    prepared.views = [torch.from_numpy(view) for view in prepared.views]
    return prepared


def _result(future: "futures.Future[PreparedVideo]") -> "PreparedVideo":
    """``future.result()`` that ends when the run is told to stop (``video.stop_decoding``, Ctrl-C):
    a worker decoding a long video would otherwise be waited for to its last frame."""
    from . import video

    while True:
        try:
            return future.result(timeout=0.1)
        except futures.TimeoutError:
            if video.decoding_stopped():
                # The run's own interrupt, where it waits (a decode thread, or here): no video's error.
                raise KeyboardInterrupt from None


def _stop(pool: futures.ProcessPoolExecutor) -> None:
    """Shut the pool down without waiting for the video a worker is decoding: its result is not wanted."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # (gone once shut down)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive():
            process.terminate()


def _context() -> multiprocessing.context.BaseContext:
    # Not fork: the parent has CUDA and thread pools running. forkserver starts workers fast.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def in_processes(
    preparer: "Engine", items: Iterable[InputVideo], workers: int, decoder_threads: int = 0
) -> Iterator["PreparedVideo"]:
    """``preparer.prepare(item, decoder_threads)`` for each item, in order, in ``workers`` processes.

    ``preparer`` is an engine without its model (it is pickled to each worker once). Raises
    :class:`VswinError` when the workers die before any of them starts (a script without a
    ``__main__`` guard), or cannot start at all (in a daemonic process): that is no video's fault.
    """
    if _booting_worker():
        # An unguarded script re-run by a worker: leave quietly, the parent says what to do
        # (multiprocessing would print a traceback here, once per worker).
        raise SystemExit(1)
    if multiprocessing.current_process().daemon:  # multiprocessing would assert as the first worker starts
        raise VswinError(_IN_DAEMON)
    context = _context()
    started = context.Event()

    def new_pool(size: int) -> futures.ProcessPoolExecutor:
        return futures.ProcessPoolExecutor(
            size, mp_context=context, initializer=_start_worker, initargs=(preparer, decoder_threads, started, os.getpid())
        )

    def submit(item: InputVideo) -> futures.Future[PreparedVideo]:
        try:
            return pool.submit(_prepare_in_worker, item)
        except BrokenProcessPool as error:  # a worker died before its future was looked at
            future: futures.Future[PreparedVideo] = futures.Future()
            future.set_exception(error)
            return future

    iterator = iter(items)
    pending: collections.deque[tuple[InputVideo, futures.Future[PreparedVideo]]] = collections.deque()
    pool = new_pool(workers)
    try:
        while True:
            while len(pending) <= workers:
                item = next(iterator, None)
                if item is None:
                    break
                pending.append((item, submit(item)))
            if not pending:
                return
            item, future = pending.popleft()
            try:
                yield _received(_result(future))
                continue
            except BrokenProcessPool:
                if not started.is_set():
                    raise VswinError(_NEVER_STARTED) from None
                suspects = [item] + [other for other, _ in pending]
            except Exception as error:  # the worker could not send this video back
                yield preparer.failed(item, f"could not process this video ({error.__class__.__name__}: {error})")
                continue
            pending.clear()
            pool.shutdown(wait=False, cancel_futures=True)
            yield from _isolate(preparer, suspects, new_pool)
            pool = new_pool(workers)
    finally:
        _stop(pool)  # stopped early (Ctrl-C, a consumer that left): nothing in flight is waited for


def _isolate(preparer: "Engine", suspects: list[InputVideo], new_pool: Callable[[int], futures.ProcessPoolExecutor]) -> Iterator["PreparedVideo"]:
    """Retry the videos a dead worker took down, one at a time: only a video that kills its worker alone fails."""
    single = new_pool(1)
    try:
        for item in suspects:
            try:
                future = single.submit(_prepare_in_worker, item)
            except BrokenProcessPool:  # broken before this video ran: not its doing
                single = new_pool(1)
                future = single.submit(_prepare_in_worker, item)
            try:
                yield _received(_result(future))
            except BrokenProcessPool:
                single.shutdown(wait=False, cancel_futures=True)
                single = new_pool(1)
                yield preparer.failed(item, DECODER_CRASHED)
            except Exception as error:
                yield preparer.failed(item, f"could not process this video ({error.__class__.__name__}: {error})")
    finally:
        _stop(single)
