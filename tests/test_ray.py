"""`--engine ray` gives the records, features and resume behaviour of the local engine.

One local Ray instance (2 CPUs) serves the whole module: the in-process Python API runs in it,
and the CLI, run as a user would in a subprocess, joins it with ``--ray-address``. The reference
is always the local engine on the same folder, same model and same options.

Ray is an optional extra: without it these tests are skipped on a developer machine and fail on
CI (CI=true), where the extra is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import vswin_cli
from tests.conftest import REPO, run_vswin
from tests.media import encode_cv2

try:
    import ray
    import ray.data
except ImportError:  # the extra is not installed
    ray = None

ON_CI = os.environ.get("CI", "").lower() == "true"
NEEDS_RAY = 'Ray is not installed (pip install "vswin-cli[ray]"); CI installs it and runs these tests'

# Small views so the whole module stays fast: 2 clips x 1 crop of 4 frames per video; a model
# batch of 4 views, so batches hold views of two videos.
OPTIONS = ["--clips", "2", "--crops", "1", "--clip-len", "4", "--frame-interval", "1", "--batch-size", "4"]
API_OPTIONS = dict(clips=2, crops=1, clip_len=4, frame_interval=1, batch_size=4, top_k=3)
LABELS = [f"class {i}" for i in range(10)]


def require_ray() -> None:
    if ray is None:
        if ON_CI:
            pytest.fail(NEEDS_RAY)
        pytest.skip(NEEDS_RAY)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    from vswin_cli.checkpoints import save_native
    from vswin_cli.model import SwinConfig, VideoSwin

    root = tmp_path_factory.mktemp("ray")
    torch.manual_seed(8)
    model = VideoSwin(SwinConfig(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=(4, 7, 7), num_classes=10))
    checkpoint = save_native(model, root / "tiny.safetensors", labels=LABELS)
    videos = root / "videos"
    videos.mkdir()
    # Different lengths, sizes and rates, so every video has its own frames, times and scores.
    encode_cv2(videos / "a.avi", frames=40, size=(64, 48), fps=25)
    encode_cv2(videos / "b.avi", frames=30, size=(48, 64), fps=30)
    encode_cv2(videos / "c.avi", frames=50, size=(80, 48), fps=24)
    encode_cv2(videos / "d.avi", frames=3, size=(64, 48), fps=25)  # shorter than a clip: a warning
    encode_cv2(videos / "e.avi", frames=20, size=(56, 56), fps=10)
    (videos / "notes.mp4").write_text("not a video\n")  # broken files get error records
    (videos / "empty.mp4").write_bytes(b"")
    return {"root": root, "model": checkpoint, "videos": videos}


@pytest.fixture(scope="module")
def cluster(data: dict[str, Path]) -> str:
    """A local Ray instance for the module; returns the address the CLI joins."""
    require_ray()
    markers = data["root"] / "crash-markers"
    markers.mkdir()

    def crash_hook() -> None:
        # Runs in every worker of this test process's job: a worker dies (as if killed) the first
        # time it decodes or runs the model while a marker file exists; the marker is consumed.
        import os as os_

        from vswin_cli import engine, video

        run_views, read_video = engine.Engine._run_views, video.read_video

        def consume(name: str) -> bool:
            try:
                os_.remove(markers / name)
            except FileNotFoundError:
                return False
            return True

        def die_once(name: str) -> None:
            if consume(name):
                os_._exit(3)

        def crashing_run_views(self, batch):
            die_once("model")
            if consume("model-raises"):  # a bug in the model code, not a dead worker
                raise RuntimeError("injected model failure")
            return run_views(self, batch)

        def crashing_read_video(path, plan, *args, **kwargs):
            die_once("decode")
            if (markers / f"always-{os_.path.basename(path)}").exists():  # a video that crashes FFmpeg
                os_._exit(3)
            return read_video(path, plan, *args, **kwargs)

        engine.Engine._run_views = crashing_run_views
        video.read_video = crashing_read_video

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        runtime_env={"py_modules": [str(Path(vswin_cli.__file__).parent)], "worker_process_setup_hook": crash_hook},
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_records(data: dict[str, Path]) -> list[dict]:
    """The local engine's records (the CLI's JSONL output) on the test folder."""
    out = data["root"] / "local.jsonl"
    result = run_vswin("classify", data["videos"], "-m", data["model"], *OPTIONS, "--top-k", "3", "-o", out)
    assert result.returncode == 1, result.stderr  # two broken files
    return read_jsonl(out)


# --- helpers ----------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_same_predictions(got: list[dict], want: list[dict]) -> None:
    assert [(p["rank"], p["index"], p["label"]) for p in got] == [(p["rank"], p["index"], p["label"]) for p in want]
    np.testing.assert_allclose([p["score"] for p in got], [p["score"] for p in want], rtol=0, atol=1e-6)


def assert_same_record(got: dict, want: dict) -> None:
    for key in ("path", "status", "error", "warnings", "model", "video", "views"):
        assert got[key] == want[key], (want["path"], key)
    assert_same_predictions(got["predictions"], want["predictions"])
    assert len(got["clips"]) == len(want["clips"])
    for got_clip, want_clip in zip(got["clips"], want["clips"]):
        assert (got_clip["start"], got_clip["end"], got_clip["frames"]) == (want_clip["start"], want_clip["end"], want_clip["frames"])
        assert_same_predictions(got_clip["predictions"], want_clip["predictions"])


def assert_same_records(got: list[dict], want: list[dict]) -> None:
    assert [r["path"] for r in got] == [r["path"] for r in want]
    for got_record, want_record in zip(got, want):
        assert_same_record(got_record, want_record)


# --- the CLI ----------------------------------------------------------------------------------


def test_classify_on_ray_gives_the_local_records(data, cluster, local_records) -> None:
    out = data["root"] / "ray.jsonl"
    result = run_vswin("classify", data["videos"], "-m", data["model"], *OPTIONS, "--top-k", "3", "-o", out,
                       "--engine", "ray", "--ray-address", cluster)
    assert result.returncode == 1, result.stderr  # the broken files fail, as locally
    records = read_jsonl(out)
    assert_same_records(records, local_records)
    statuses = {Path(r["path"]).name: r["status"] for r in records}
    assert statuses == {"a.avi": "ok", "b.avi": "ok", "c.avi": "ok", "d.avi": "ok", "e.avi": "ok",
                        "empty.mp4": "error", "notes.mp4": "error"}
    assert next(r for r in records if r["path"].endswith("d.avi"))["warnings"]  # the short video says so


def test_extract_features_on_ray_writes_the_local_files(data, cluster) -> None:
    args = ["extract-features", data["videos"], "-m", data["model"], *OPTIONS, "--per-clip", "--with-logits"]
    local = run_vswin(*args, "-o", data["root"] / "feats-local")
    remote = run_vswin(*args, "-o", data["root"] / "feats-ray", "--engine", "ray", "--ray-address", cluster)
    assert (local.returncode, remote.returncode) == (1, 1), remote.stderr

    def files(folder: Path) -> list[str]:
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

    local_dir, ray_dir = data["root"] / "feats-local", data["root"] / "feats-ray"
    assert files(ray_dir) == files(local_dir)
    arrays = [name for name in files(local_dir) if name.endswith(".npy")]
    assert len(arrays) == 10  # features and scores of the five good videos
    for name in arrays:
        want, got = np.load(local_dir / name), np.load(ray_dir / name)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    for name in files(local_dir):
        if name.endswith(".json"):  # sidecars: times, frames, protocol, model
            assert json.loads((ray_dir / name).read_text()) == json.loads((local_dir / name).read_text())
    index = {e["path"]: (e["status"], e.get("error")) for e in read_jsonl(ray_dir / "index.jsonl")}
    assert index == {e["path"]: (e["status"], e.get("error")) for e in read_jsonl(local_dir / "index.jsonl")}


def test_resume_on_ray_finishes_an_interrupted_journal_without_recomputing(data, cluster, local_records) -> None:
    # What a killed run leaves: the first videos journaled, the next line cut in the middle.
    done = [dict(r) for r in local_records if r["status"] == "ok"][:2]
    for record in done:  # a mark that only survives if these videos are not computed again
        # three labels, as --top-k 3 asks (a record with another number is redone)
        record["predictions"] = [{"rank": r, "index": 9 - r, "label": f"class {9 - r}", "score": 0.5 / r} for r in (1, 2, 3)]
    out = data["root"] / "resumed.jsonl"
    cut = json.dumps(local_records[4])[:40]
    out.write_text("".join(json.dumps(r) + "\n" for r in done) + cut)

    result = run_vswin("classify", data["videos"], "-m", data["model"], *OPTIONS, "--top-k", "3", "-o", out,
                       "--resume", "--engine", "ray", "--ray-address", cluster)
    assert result.returncode == 1, result.stderr
    records = read_jsonl(out)
    by_path = {r["path"]: r for r in records}
    assert len(records) == len(by_path) == len(local_records)  # every video exactly once
    for record in done:
        assert by_path[record["path"]]["predictions"] == record["predictions"]  # kept, not recomputed
    skipped = {r["path"] for r in done}
    for want in local_records:
        if want["path"] not in skipped:
            assert_same_record(by_path[want["path"]], want)


def test_engine_ray_without_ray_exits_2_naming_the_extra(data) -> None:
    # The interpreter as a user without the extra has it: `import ray` fails.
    code = (
        "import sys; sys.modules['ray'] = None; sys.argv = ['vswin'] + sys.argv[1:]\n"
        "from vswin_cli.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "classify", str(data["videos"]), "-m", str(data["model"]), "--engine", "ray"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "vswin-cli[ray]"' in lines[0], result.stderr
    assert result.stdout == ""


def test_the_base_install_never_imports_ray() -> None:
    code = "import sys, vswin_cli, vswin_cli.cli, vswin_cli.engine; assert 'ray' not in sys.modules, 'ray imported'"
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# --- the Python API and faults ----------------------------------------------------------------


@pytest.fixture(scope="module")
def local_outcomes(data):
    from vswin_cli.engine import Engine, RunOptions
    from vswin_cli.inputs import discover
    from vswin_cli.loading import load_model

    engine = Engine(load_model(str(data["model"])), RunOptions(**API_OPTIONS))
    items = discover([data["videos"]]).videos
    return engine, items, list(engine.run(items))


def test_classify_dataset_returns_the_records_and_features_as_a_ray_dataset(data, cluster, local_outcomes) -> None:
    from vswin_cli.ray_engine import classify_dataset

    _, items, outcomes = local_outcomes
    paths = ray.data.from_items([{"path": str(item.path)} for item in items])
    dataset = classify_dataset(paths, model=str(data["model"]), with_features=True, **API_OPTIONS)
    assert isinstance(dataset, ray.data.Dataset)
    dataset.write_parquet(str(data["root"] / "parquet"))  # users chain their own sinks

    import pyarrow.parquet as pq

    rows = sorted(pq.read_table(data["root"] / "parquet").to_pylist(), key=lambda r: r["path"])
    assert len(rows) == len(outcomes)
    for row, outcome in zip(rows, outcomes):
        assert_same_record(row, outcome.record.to_dict())
        if outcome.features is None:
            assert row["features"] is None and row["clip_features"] is None
        else:
            np.testing.assert_allclose(np.asarray(row["features"]), outcome.features, rtol=0, atol=1e-6)
            np.testing.assert_allclose(np.asarray(row["clip_features"]), outcome.clip_features, rtol=0, atol=1e-6)


def test_classify_dataset_leaves_a_callers_model_in_its_mode_with_its_weights(data, cluster, local_outcomes) -> None:
    from vswin_cli.ray_engine import classify_dataset

    _, items, outcomes = local_outcomes
    model = vswin_cli.load_model(str(data["model"]))
    model.train()  # a caller fine-tuning it; the run must not switch it to eval behind their back
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    dataset = classify_dataset([str(item.path) for item in items], model=model, **API_OPTIONS)
    assert model.training
    assert all(torch_equal(before[name], tensor) for name, tensor in model.state_dict().items())
    rows = sorted(dataset.take_all(), key=lambda r: r["path"])  # computed after the model went back
    want = sorted((o.record.to_dict() for o in outcomes), key=lambda r: r["path"])
    assert len(rows) == len(want)
    for row, record in zip(rows, want):
        assert_same_record(row, record)


def torch_equal(a, b) -> bool:
    import torch

    return a.device == b.device and torch.equal(a, b)


def test_a_worker_dying_mid_batch_costs_a_retry_not_the_run(data, cluster, local_outcomes) -> None:
    from vswin_cli.ray_engine import run_on_ray

    engine, items, want = local_outcomes
    markers = data["root"] / "crash-markers"
    (markers / "model").touch()  # the first model actor dies inside its first batch
    (markers / "decode").touch()  # and one decode task dies mid-video
    got = list(run_on_ray(engine, items))
    assert sorted(p.name for p in markers.iterdir()) == []  # both crashes happened
    assert [o.item for o in got] == [o.item for o in want]  # every video, in input order
    for g, w in zip(got, want):
        assert_same_record(g.record.to_dict(), w.record.to_dict())
        for name in ("features", "clip_features", "scores", "clip_scores"):
            if getattr(w, name) is None:
                assert getattr(g, name) is None
            else:
                np.testing.assert_allclose(getattr(g, name), getattr(w, name), rtol=0, atol=1e-6)


def test_a_video_that_kills_its_worker_every_time_is_an_error_record(data, cluster, local_outcomes) -> None:
    # Ray Data retries a task whose worker died without limit: the run must not loop forever.
    from vswin_cli.ray_engine import run_on_ray

    engine, items, want = local_outcomes
    marker = data["root"] / "crash-markers" / "always-c.avi"
    attempts = Path(tempfile.gettempdir()) / "vswin-ray-attempts"
    runs_before = set(attempts.iterdir()) if attempts.is_dir() else set()
    marker.touch()
    try:
        got = list(run_on_ray(engine, items))
    finally:
        marker.unlink()
    # The dead workers' attempt markers went with the run (they were left in /tmp, a folder per run).
    assert (set(attempts.iterdir()) if attempts.is_dir() else set()) <= runs_before
    assert [o.item for o in got] == [o.item for o in want]
    for g, w in zip(got, want):
        if w.item.path.name == "c.avi":
            assert (g.record.status, g.record.error) == ("error", "the decoder crashed on this video (its Ray worker died decoding it)")
            assert g.record.model == w.record.model and g.record.views == w.record.views
            assert g.scores is None and g.features is None
        else:
            assert_same_record(g.record.to_dict(), w.record.to_dict())


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_an_unreachable_cluster_is_one_line_and_exit_2(data, fmt) -> None:
    require_ray()
    result = run_vswin("classify", data["videos"], "-m", data["model"], "--engine", "ray", "--ray-address", "127.0.0.1:1",
                       "--format", fmt)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Ray cluster at 127.0.0.1:1" in lines[0], result.stderr
    # Was "[]" or a CSV header: an empty result that `> out.json` kept as if the run had found nothing.
    assert result.stdout == ""


def test_an_address_where_something_else_listens_is_one_line_in_seconds(data, tmp_path) -> None:
    # Was: Ray retried for minutes, printing GCS time-outs (e.g. the dashboard's port given).
    require_ray()
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        result = run_vswin("classify", data["videos"] / "a.avi", "-m", data["model"], "--engine", "ray",
                           "--ray-address", address, timeout=60)
    finally:
        server.shutdown()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --ray-address {address}: something answers there, but not a Ray cluster; give the head's GCS port "
        "(HOST:6379, not the dashboard's 8265), auto, or ray://HOST:10001"]


def test_device_and_precision_are_the_clusters_to_judge_not_the_drivers(data, cluster) -> None:
    # The driver only ships the weights: its own lack of a GPU must not refuse --device cuda or
    # --precision fp16 (it did, before the cluster was asked); the cluster's answer is what counts.
    base = ["classify", data["videos"] / "a.avi", "-m", data["model"], *OPTIONS, "--engine", "ray", "--ray-address", cluster]
    fp16 = run_vswin(*base, "--precision", "fp16")
    assert fp16.returncode == 2 and fp16.stderr.strip().splitlines() == [
        "error: --precision fp16 needs a GPU and the Ray cluster's model actors have none; use bf16 or fp32"
    ], fp16.stderr
    cuda = run_vswin(*base, "--device", "cuda")
    assert cuda.returncode == 2 and cuda.stderr.strip().splitlines() == [
        "error: --device cuda was asked for but the Ray cluster has no GPUs; use --device auto or cpu"
    ], cuda.stderr


def test_relative_paths_are_the_users_not_the_workers(data, cluster, local_records, monkeypatch) -> None:
    # The cluster's workers run in the folder Ray was started in; the user is somewhere else.
    want = {Path(r["path"]).name: r for r in local_records}
    result = run_vswin("classify", "videos/a.avi", "videos/notes.mp4", "-m", data["model"], *OPTIONS, "--top-k", "3",
                       "--format", "jsonl", "--engine", "ray", "--ray-address", cluster, cwd=data["root"])
    assert result.returncode == 1, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == ["videos/a.avi", "videos/notes.mp4"]  # as the user spelled them
    for record in records:
        assert_same_record({**record, "path": want[Path(record["path"]).name]["path"]}, want[Path(record["path"]).name])

    from vswin_cli.ray_engine import classify_dataset

    monkeypatch.chdir(data["root"])  # the API: relative to the caller's folder when it was called
    rows = classify_dataset(ray.data.from_items([{"path": "videos/b.avi"}]), model=str(data["model"]), **API_OPTIONS).take_all()
    assert [(r["path"], r["status"], r["error"]) for r in rows] == [("videos/b.avi", "ok", None)]


def test_classify_dataset_checks_num_actors_and_leaves_precision_to_the_cluster(data, cluster) -> None:
    from vswin_cli.errors import VswinError
    from vswin_cli.ray_engine import classify_dataset

    videos = [str(data["videos"] / "a.avi")]
    for wrong in (0, -1):  # 0 used to mean "the default" without a word
        with pytest.raises(VswinError, match="num_actors must be at least 1"):
            classify_dataset(videos, model=str(data["model"]), num_actors=wrong, **API_OPTIONS)
    # fp16 is for the actors' GPUs, not the driver's CPU: the answer comes from the cluster (here: none).
    with pytest.raises(VswinError, match="the Ray cluster has no GPUs"):
        classify_dataset(videos, model=str(data["model"]), device="cuda", precision="fp16", **API_OPTIONS)
    with pytest.raises(VswinError, match="--precision fp16 needs a GPU and the Ray cluster"):
        classify_dataset(videos, model=str(data["model"]), precision="fp16", **API_OPTIONS)


def test_a_failed_ray_run_names_the_original_error(data, cluster, local_outcomes) -> None:
    from vswin_cli.errors import VswinError
    from vswin_cli.ray_engine import run_on_ray

    engine, items, _ = local_outcomes
    markers = data["root"] / "crash-markers"
    (markers / "model-raises").touch()
    with pytest.raises(VswinError, match="the Ray run failed: RuntimeError: injected model failure "):
        list(run_on_ray(engine, items[:2]))  # the reason, not the last line of Ray's retry advice


@pytest.mark.parametrize("resources, options, num_actors, count, cpus_each", [
    ({"CPU": 1.0}, {}, None, 1, 0.0),  # was 1: the actor held the only CPU and decoding never started
    ({"CPU": 2.0}, {}, None, 1, 1.0),
    ({"CPU": 16.0}, {}, None, 1, 8.0),
    ({"CPU": 2.0}, {}, 3, 3, 1 / 3),
    ({"CPU": 8.0, "GPU": 8.0}, {}, None, 8, 7 / 8),  # one CPU per GPU actor would leave none to decode
    ({"CPU": 16.0, "GPU": 2.0}, {"device": "cuda"}, None, 2, 1.0),
])
def test_model_actors_always_leave_a_cpu_to_decoding(resources, options, num_actors, count, cpus_each) -> None:
    from vswin_cli.engine import RunOptions
    from vswin_cli.ray_engine import _plan_actors

    plan = _plan_actors(resources, RunOptions(**options), num_actors)
    assert (plan.count, plan.num_cpus) == (count, pytest.approx(cpus_each))
    assert plan.count * plan.num_cpus <= resources["CPU"] - 1


def test_rays_own_messages_go_to_stderr_not_among_the_results(monkeypatch, capsys) -> None:
    # Was: "(raylet) A worker died..." and retry notices were printed to stdout, inside a
    # --format json document (which then did not parse).
    require_ray()
    import ray._private.worker as ray_worker

    from vswin_cli.ray_engine import _messages_to_stderr

    monkeypatch.setattr(ray_worker, "print_to_stdstream", ray_worker.print_to_stdstream)  # restored after
    _messages_to_stderr(ray)
    _messages_to_stderr(ray)  # once is enough: not wrapped twice
    ray_worker.print_to_stdstream({"lines": ["A worker died or was killed"], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    out, err = capsys.readouterr()
    assert out == "" and err.count("A worker died or was killed") == 1


def test_an_option_the_model_actors_refuse_is_one_line_and_exit_2() -> None:
    require_ray()
    from vswin_cli.errors import VswinError
    from vswin_cli.ray_engine import _rows_or_error

    class Rows:  # what Ray raises when the actors' constructor refuses the run's options
        def iter_rows(self):
            raise ray.exceptions.RayError(
                "Traceback (most recent call last):\n  File \"engine.py\", line 1, in __init__\n"
                "vswin_cli.errors.VswinError: --device cuda:1: this machine has 1 CUDA GPU(s), numbered from 0\n\n"
                "The above exception was the direct cause of the following exception:\n\nray.exceptions.ActorDiedError: ...")

    with pytest.raises(VswinError) as caught:
        list(_rows_or_error(ray, Rows()))
    assert str(caught.value) == "--device cuda:1: this machine has 1 CUDA GPU(s), numbered from 0"
    assert caught.value.exit_code == 2


def test_device_mps_is_refused_before_ray_starts() -> None:
    from vswin_cli.engine import RunOptions
    from vswin_cli.errors import VswinError
    from vswin_cli.ray_engine import _plan_actors

    with pytest.raises(VswinError, match="--device mps is not for --engine ray"):
        _plan_actors({"CPU": 4.0}, RunOptions(device="mps"), None)


def test_python_oo_is_refused_before_the_model_loads(data) -> None:
    # Was: a traceback from inside Ray Data (it reads docstrings, which -OO strips), after the model was loaded.
    require_ray()
    result = run_vswin("classify", data["videos"] / "a.avi", "-m", data["model"], *OPTIONS, "--engine", "ray",
                       env={"PYTHONOPTIMIZE": "2"})
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "error: --engine ray cannot run under python -OO (PYTHONOPTIMIZE=2): Ray needs docstrings; unset "
        "PYTHONOPTIMIZE, or use --engine local"]
