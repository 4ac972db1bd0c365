"""Decoding in worker processes (``decoders="processes"``) gives what decoding in threads gives,
and a video that kills its worker process costs only that video's result."""

from __future__ import annotations

import concurrent.futures as futures
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from vswin_cli import prefetch
from vswin_cli.engine import Engine, RunOptions
from vswin_cli.errors import VswinError
from vswin_cli.inputs import InputVideo, discover
from vswin_cli.loading import load_model

import media

OPTIONS = dict(device="cpu", clips=2, crops=3, clip_len=8, frame_interval=2, decode_workers=2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for i in range(4):
        media.encode_cv2(root / f"v{i}.avi", frames=30 + 9 * i, size=(96, 64))
    (root / "v2_broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    return root


def _outcomes(checkpoint: Path, folder: Path, decoders: str) -> list:
    engine = Engine(load_model(str(checkpoint)), RunOptions(decoders=decoders, **OPTIONS))
    return list(engine.run(discover([folder]).videos))


def test_processes_give_what_threads_give(tiny_checkpoint: Path, folder: Path) -> None:
    threads = _outcomes(tiny_checkpoint, folder, "threads")
    processes = _outcomes(tiny_checkpoint, folder, "processes")
    assert [o.record.path for o in processes] == [o.record.path for o in threads]
    assert [o.record.status for o in processes] == ["ok", "ok", "ok", "error", "ok"]
    for p, t in zip(processes, threads):
        assert p.record.to_dict() == t.record.to_dict()
        if t.record.ok:
            np.testing.assert_allclose(p.scores, t.scores, rtol=0, atol=1e-6)
            np.testing.assert_allclose(p.clip_features, t.clip_features, rtol=0, atol=1e-6)


class CrashOn:
    """A preparer whose process dies on files whose name holds ``marker`` (a decoder segfault)."""

    def __init__(self, engine: Engine, marker: str) -> None:
        self.engine, self.marker = engine, marker
        self.model_name, self.views = engine.model_name, engine.views

    def prepare(self, item: InputVideo, decoder_threads: int = 0):
        if self.marker in item.path.name:
            os._exit(3)
        return self.engine.prepare(item, decoder_threads)

    def failed(self, item: InputVideo, reason: str):
        return self.engine.failed(item, reason)


@pytest.mark.parametrize("position", [0, 2, 5])
def test_a_video_that_kills_its_worker_fails_alone(tiny_checkpoint: Path, folder: Path, tmp_path: Path, position: int) -> None:
    engine = Engine(load_model(str(tiny_checkpoint)), RunOptions(decoders="threads", **OPTIONS))
    items = discover([folder]).videos
    crash = InputVideo(tmp_path / "crash.avi", tmp_path)
    items = items[:position] + [crash] + items[position:]
    expected = {str(i.path): engine.prepare(i) for i in items if i is not crash}

    prepared = list(prefetch.in_processes(CrashOn(engine.without_model(), "crash"), items, workers=2))

    assert [p.record.path for p in prepared] == [str(i.path) for i in items]
    crashed = prepared[position].record
    assert (crashed.status, crashed.error) == ("error", "the decoder crashed on this video (its worker process died)")
    assert crashed.model == engine.model_name and crashed.views == engine.views
    for p in prepared[:position] + prepared[position + 1 :]:
        reference = expected[p.record.path]
        assert p.record.to_dict() == reference.record.to_dict()
        assert len(p.views) == len(list(reference.views))
        for view, expected_view in zip(p.views, reference.views):
            assert view.dtype == expected_view.dtype and bool((view == expected_view).all())


SCRIPT = """\
import sys
import vswin_cli

def main():
    records = vswin_cli.classify(sys.argv[1], model=sys.argv[2], decoders="processes", clips=1, crops=1, clip_len=4)
    print(" ".join(r["status"] for r in records))

{call}
"""


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_without_a_main_guard_is_told_to_add_one(tiny_checkpoint: Path, folder: Path, tmp_path: Path, guarded: bool) -> None:
    # Worker processes import the calling script; without the guard each re-runs the classify call
    # and dies starting up. That used to fail every video as "the decoder crashed on this video",
    # under one multiprocessing traceback per worker.
    import subprocess
    import sys

    from tests.conftest import SUBPROCESS_ENV

    script = tmp_path / "label_videos.py"
    script.write_text(SCRIPT.format(call='if __name__ == "__main__":\n    main()' if guarded else "main()"))
    result = subprocess.run(
        [sys.executable, str(script), str(folder), str(tiny_checkpoint)],
        env={**os.environ, **SUBPROCESS_ENV}, capture_output=True, text=True, timeout=300,
    )
    if guarded:
        assert result.returncode == 0, result.stderr
        assert sorted(result.stdout.split()) == ["error"] + ["ok"] * 4  # v2_broken.mp4 is not a video
        return
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == f"vswin_cli.errors.VswinError: {prefetch._NEVER_STARTED}"
    assert 'under `if __name__ == "__main__":`' in prefetch._NEVER_STARTED
    assert "RuntimeError" not in result.stderr and "bootstrapping" not in result.stderr  # no worker's traceback
    assert result.stderr.count("Traceback") == 1


def test_decoders_choice(tiny_checkpoint: Path) -> None:
    model = load_model(str(tiny_checkpoint))
    assert not Engine(model, RunOptions(device="cpu")).decodes_in_processes(videos=10)
    assert Engine(model, RunOptions(device="cpu", decoders="processes")).decodes_in_processes(videos=10)
    assert not Engine(model, RunOptions(device="cpu", decoders="processes")).decodes_in_processes(videos=1)
    # sliding windows are read lazily by the model's side: always threads
    assert not Engine(model, RunOptions(device="cpu", decoders="processes", stride=1.0)).decodes_in_processes(videos=10)
    with pytest.raises(VswinError, match="decoders must be auto, threads or processes"):
        RunOptions(decoders="fibers")
    with pytest.raises(VswinError, match="--decode-workers must be at least 1"):
        RunOptions(decode_workers=0)



def test_several_decoders_share_the_cores(tiny_checkpoint: Path, folder: Path, monkeypatch) -> None:
    # Each decoder would otherwise start one FFmpeg thread per core (8 decoders on 16 cores: 128).
    from vswin_cli import video

    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    model = load_model(str(tiny_checkpoint))
    real_open = video._open
    for workers, expected in ((2, 3), (4, 1), (1, 0)):
        opened: list[int] = []
        monkeypatch.setattr(video, "_open", lambda path, head, threads=0: opened.append(threads) or real_open(path, head, threads))
        engine = Engine(model, RunOptions(**{**OPTIONS, "decode_workers": workers, "decoders": "threads"}))
        outcomes = list(engine.run(discover([folder]).videos))
        assert [o.record.status for o in outcomes].count("ok") == 4
        assert opened and set(opened) == {expected}, workers


class ReportsThreads:
    """A preparer that notes, in each record, the decoder threads its worker process was given."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.model_name, self.views = engine.model_name, engine.views

    def prepare(self, item: InputVideo, decoder_threads: int = 0):
        prepared = self.engine.prepare(item, decoder_threads)
        prepared.record.warnings.append(f"decoder threads {decoder_threads}")
        return prepared


def test_worker_processes_get_their_share_of_the_cores(tiny_checkpoint: Path, folder: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    engine = Engine(load_model(str(tiny_checkpoint)), RunOptions(**{**OPTIONS, "decoders": "processes"}))
    given = {}
    monkeypatch.setattr(prefetch, "in_processes", lambda preparer, items, workers, threads: given.update(workers=workers, threads=threads) or iter(()))
    list(engine.run(discover([folder]).videos))
    assert given == {"workers": 2, "threads": 3}

    monkeypatch.undo()
    items = discover([folder]).videos
    prepared = list(prefetch.in_processes(ReportsThreads(engine.without_model()), items, workers=2, decoder_threads=3))
    assert [p.record.warnings[-1] for p in prepared] == ["decoder threads 3"] * len(items)


# Loaded at start-up by every Python of a test's runs (the CLI and its worker processes, through
# PYTHONPATH): decoding a video whose name holds "crash" kills the process, as a decoder segfault
# would; nothing in the package knows.
CRASHING_DECODER = '''
import os
from vswin_cli import video

_read_video = video.read_video


def read_video(path, *args, **kwargs):
    if "crash" in os.path.basename(path):
        os._exit(139)
    return _read_video(path, *args, **kwargs)


video.read_video = read_video
'''


# The same for sliding windows, whose frames a second pass decodes as the model takes them.
CRASHING_WINDOW_DECODER = '''
import os
from vswin_cli import video

_stream = video._stream


def _crashing_stream(path, *args, **kwargs):
    if "crash" in os.path.basename(path):
        os._exit(139)
    yield from _stream(path, *args, **kwargs)


video._stream = _crashing_stream
'''


@pytest.mark.parametrize("hook, sampling", [
    (CRASHING_DECODER, ["--clips", "1", "--frame-interval", "1"]),
    # Was: the marker was held only while the file was probed, so every --resume died again.
    (CRASHING_WINDOW_DECODER, ["--stride", "0.5"]),
], ids=["clips", "sliding windows"])
def test_a_decoder_crash_in_threads_costs_one_run_not_every_rerun(tiny_checkpoint: Path, folder: Path, tmp_path: Path,
                                                                  hook: str, sampling: list[str]) -> None:
    from tests.conftest import REPO, run_vswin

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(hook)
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("v0.avi", "v1.avi", "v3.avi"):
        (videos / name).write_bytes((folder / name).read_bytes())
    (videos / "v2_crash.avi").write_bytes((folder / "v2.avi").read_bytes())
    (tmp_path / "tmp").mkdir()
    env = {"PYTHONPATH": f"{site}{os.pathsep}{REPO}", "TMPDIR": str(tmp_path / "tmp")}
    out = tmp_path / "labels.jsonl"
    args = ["classify", videos, "-m", tiny_checkpoint, "--crops", "1", "--clip-len", "4", *sampling, "-o", out]

    first = run_vswin(*args, env=env)
    assert first.returncode == 139, first.stderr  # threads: the crash ends the run (the default)
    journaled = [json.loads(line)["path"] for line in out.read_text().splitlines()] if out.exists() else []
    assert "v2_crash.avi" not in [Path(path).name for path in journaled]  # (how many others made it depends on timing)

    for attempt in range(2):  # then every rerun gets past it: decoded apart, in a process that dies alone
        again = run_vswin(*args, "--resume", env=env)
        assert again.returncode == 1, again.stderr
        records = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
        assert sorted(records) == ["v0.avi", "v1.avi", "v2_crash.avi", "v3.avi"], attempt
        assert (records["v2_crash.avi"]["status"], records["v2_crash.avi"]["error"]) == ("error", prefetch.DECODER_CRASHED)
        assert all(records[name]["status"] == "ok" for name in ("v0.avi", "v1.avi", "v3.avi"))


def _died_decoding(folder: Path, tmp_path: Path, monkeypatch) -> tuple[InputVideo, Path, str]:
    """A video of ``folder``, the crash markers' folder and its key, with the marker a process that
    died decoding it leaves."""
    from vswin_cli import crash_markers

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    item = discover([folder]).videos[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    markers = crash_markers.local_folder()
    markers.mkdir(parents=True)
    key = crash_markers.key_of(os.path.abspath(item.path))
    (markers / f"{key}.{dead}").touch()
    return item, markers, key


def test_sliding_windows_decoded_apart_after_a_crash_elsewhere_are_read_here(tiny_checkpoint: Path, folder: Path, tmp_path: Path, monkeypatch) -> None:
    # The worker only tries the file; the windows, as many as the video is long, are then read
    # lazily in this process (under the marker), and equal the usual ones.
    item, markers, key = _died_decoding(folder, tmp_path, monkeypatch)
    engine = Engine(load_model(str(tiny_checkpoint)), RunOptions(decoders="threads", stride=0.3, **{**OPTIONS, "clips": None}))
    apart: list[InputVideo] = []
    real_in_processes = prefetch.in_processes
    monkeypatch.setattr(prefetch, "in_processes", lambda preparer, items, *a: apart.extend(items) or real_in_processes(preparer, items, *a))
    prepared = prefetch.remembering_crashes(engine)(item)
    assert apart == [item] and prepared.record.status == "ok"
    assert list(markers.iterdir()) == []  # forgotten; this process's own is taken when the windows are read
    views = iter(prepared.views)
    first = next(views)
    assert [marker.name for marker in markers.iterdir()] == [f"{key}.{os.getpid()}"]
    usual = [v.tolist() for v in engine.prepare(item).views]
    assert [first.tolist(), *(v.tolist() for v in views)] == usual and len(usual) > 1
    assert list(markers.iterdir()) == []


def test_a_video_decoded_apart_after_a_crash_elsewhere_keeps_its_result(tiny_checkpoint: Path, folder: Path, tmp_path: Path, monkeypatch) -> None:
    # The process died while this video was decoding, but for another reason (killed, out of
    # memory): decoded apart, it gives its usual result, and later runs decode it as usual.
    item, markers, key = _died_decoding(folder, tmp_path, monkeypatch)
    engine = Engine(load_model(str(tiny_checkpoint)), RunOptions(decoders="threads", **OPTIONS))
    apart: list[InputVideo] = []
    real_in_processes = prefetch.in_processes
    monkeypatch.setattr(prefetch, "in_processes", lambda preparer, items, *a: apart.extend(items) or real_in_processes(preparer, items, *a))
    prepared = prefetch.remembering_crashes(engine)(item)
    assert apart == [item] and prepared.record.status == "ok"
    usual = engine.prepare(item)
    assert [v.tolist() for v in prepared.views] == [v.tolist() for v in usual.views]
    assert list(markers.iterdir()) == []  # forgotten: the next run decodes it in its thread
    prefetch.remembering_crashes(engine)(item)
    assert apart == [item]


def test_processes_asked_for_inside_a_daemonic_process_are_a_vswin_error(tiny_checkpoint: Path, folder: Path, monkeypatch) -> None:
    # Was: multiprocessing's bare AssertionError ("daemonic processes are not allowed to have
    # children") out of classify in a multiprocessing.Pool worker.
    import multiprocessing

    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True)  # as in a Pool's worker
    engine = Engine(load_model(str(tiny_checkpoint)), RunOptions(decoders="processes", **OPTIONS))
    with pytest.raises(VswinError, match=r'cannot start inside a daemonic process .*use decoders="threads"'):
        list(engine.run(discover([folder]).videos))


def test_a_video_to_decode_apart_inside_a_daemonic_process_fails_alone(tiny_checkpoint: Path, folder: Path, tmp_path: Path, monkeypatch) -> None:
    # Was: the AssertionError of a worker process started from a daemonic one ended the whole run.
    # Now that video is an error record, the others are classified, and its markers stay for a
    # run that can decode it apart.
    import multiprocessing

    item, markers, key = _died_decoding(folder, tmp_path, monkeypatch)
    marked = sorted(markers.iterdir())
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True)
    engine = Engine(load_model(str(tiny_checkpoint)), RunOptions(decoders="threads", **OPTIONS))
    items = discover([folder]).videos
    assert items[0] == item
    outcomes = list(engine.run(items))
    assert [o.record.status for o in outcomes] == ["error", "ok", "ok", "error", "ok"]  # v2_broken is no video
    assert outcomes[0].record.error == prefetch.NOT_DECODED_APART
    assert sorted(markers.iterdir()) == marked


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_threads_hold_at_most_workers_plus_one_prepared_videos(workers: int) -> None:
    # Was: the next video was submitted before the current one was handed over: workers + 2 alive.
    import threading
    import time

    alive: set[int] = set()
    peak = [0]
    lock = threading.Lock()

    def prepare(index: int) -> int:
        with lock:
            alive.add(index)
            peak[0] = max(peak[0], len(alive))
        return index

    for index in prefetch.in_threads(prepare, range(12), workers):
        time.sleep(0.02)  # the model at work: the decoders have time to fill every free place
        with lock:
            alive.discard(index)
    assert 2 <= peak[0] <= workers + 1  # (reached on any machine that runs a thread within 20 ms)


def test_an_interrupt_does_not_wait_for_a_worker_process_to_finish_its_video() -> None:
    # Was: Ctrl-C with a video decoding apart (after an earlier crash) waited for the worker to
    # decode the whole file: 11 s for a 160 s 4K video, minutes for longer ones.
    import threading
    import time

    from vswin_cli import video

    pool = futures.ProcessPoolExecutor(1, mp_context=prefetch._context())
    working = pool.submit(time.sleep, 60)  # a worker busy with a long video
    waiter = threading.Thread(target=lambda: outcome.append(_interrupted(lambda: prefetch._result(working))))
    outcome: list[bool] = []
    try:
        waiter.start()
        time.sleep(0.3)
        assert not outcome  # waiting, as long as the run goes on
        started = time.monotonic()
        video.stop_decoding()
        waiter.join(10)
        assert outcome == [True] and time.monotonic() - started < 5
    finally:
        video._stopped.clear()
        workers = list(pool._processes.values())
        prefetch._stop(pool)
    for worker in workers:
        worker.join(10)
        assert not worker.is_alive()


def _interrupted(wait) -> bool:
    try:
        wait()
    except KeyboardInterrupt:
        return True
    return False


KILLED_SCRIPT = """\
import sys, time
from vswin_cli.engine import Engine, RunOptions
from vswin_cli.inputs import discover
from vswin_cli.loading import load_model

if __name__ == "__main__":
    options = RunOptions(device="cpu", decoders="processes", clips=1, crops=1, clip_len=4, decode_workers=2)
    for outcome in Engine(load_model(sys.argv[1]), options).run(discover([sys.argv[2]]).videos):
        print("READY", flush=True)
        time.sleep(120)
"""


def _descendants(pid: int) -> dict[int, bytes]:
    """Every process below ``pid`` (from /proc), with its start time."""
    children: dict[int, list[int]] = {}
    started: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
            started[int(entry)] = fields[19]
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = started[child]
            todo.append(child)
    return found


def _running(pid: int, started: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in (b"Z", b"X") and fields[19] == started


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_decoder_processes_end_when_their_run_is_killed(tiny_checkpoint: Path, folder: Path) -> None:
    # Was: after a SIGKILL (or the OOM killer) the workers waited for work for ever, holding
    # ~280 MB each and the run's stdout: `vswin ... | cat` never saw its end.
    import signal
    import time

    from tests.conftest import SUBPROCESS_ENV

    run = subprocess.Popen([sys.executable, "-c", KILLED_SCRIPT, str(tiny_checkpoint), str(folder)],
                           env={**os.environ, **SUBPROCESS_ENV}, stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout is not None and run.stdout.readline().strip() == "READY"
        below = _descendants(run.pid)
        assert len(below) >= 2  # the forkserver and its workers
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
    deadline = time.monotonic() + 20
    while any(_running(pid, started) for pid, started in below.items()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid, started in below.items() if _running(pid, started)]
