"""Scale-out on Ray Data: the same records as the local engine, from a whole cluster.

    vswin classify videos/ -r -o labels.jsonl --engine ray                       # a local Ray instance
    vswin extract-features videos/ -r -o feats/ --engine ray --ray-address auto  # an existing cluster

    from vswin_cli.ray_engine import classify_dataset
    records = classify_dataset(["videos/"], model="swin-t-k400", recursive=True)  # a ray.data.Dataset
    records.write_parquet("labels/")

What runs where:

* The driver (the machine running ``vswin``) lists the inputs, loads the model once and puts its
  weights into Ray's object store (``ray.put``): every node fetches them once, nobody needs the
  checkpoint cache, and no task carries weights.
* Decoding, clip sampling and preprocessing run as CPU tasks (``Dataset.map``), one video per
  call, through the local engine's own ``Engine.prepare`` (the engine is shipped without its
  model): the same code, so the same frames, views and error records (a bad file is a record,
  never a failed task). Sliding windows (``--stride``), read lazily on one machine, are all
  materialised by the task, since they travel to the model as one row.
* The model runs in an actor pool (``Dataset.map_batches`` with a callable class): one model per
  actor, built once from the shared weights; one GPU per actor when the cluster has GPUs, else a
  few CPU threads each. Each call gets several videos and batches their views together through
  ``Engine.infer``, so scores, top-k and features are computed by the same code as locally.
* Records (JSON text) and feature arrays stream back to the driver (``iter_rows``) and become
  :class:`~vswin_cli.engine.VideoOutcome`\\ s again, for the same writers, journal and ``--resume``.

Order: rows carry their input index; the driver keeps a small reorder buffer and yields outcomes
in input order as soon as every earlier video is done (Ray itself may finish them out of order).

Faults: a decode task whose worker dies is re-run (``max_retries``), except that a video that
killed two workers while being decoded is then an error record, as locally with decoder processes
(a video that crashes FFmpeg would otherwise be retried forever); a model actor that dies is
restarted and its unfinished batch retried (``max_restarts`` / ``max_task_retries``). Only those
videos are redone; the run goes on.

Ray is imported only here and only when called: the base install never imports it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from . import crash_markers
from .engine import Engine, PreparedVideo, RunOptions, VideoOutcome, resolve_batch_size
from .errors import VswinError
from .inputs import InputVideo, discover
from .model import SwinConfig, VideoSwin
from .protocol import Protocol
from .records import VideoRecord

if TYPE_CHECKING:  # pragma: no cover
    import ray.data

RAY_EXTRA_HINT = 'pip install "vswin-cli[ray]"'

__all__ = ["classify_dataset", "run_on_ray", "RAY_EXTRA_HINT"]


# --- connecting -------------------------------------------------------------------------------


def import_ray() -> Any:
    """The ``ray`` module, with Ray Data; VswinError when it is missing or cannot run here."""
    _refuse_stripped_docstrings()
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise VswinError(f"--engine ray needs Ray: {RAY_EXTRA_HINT}") from None
    except Exception as error:  # Ray's own import failing: one line, not its traceback
        raise VswinError(f"Ray could not be imported ({error.__class__.__name__}: {error}); check its installation") from None
    return ray


def _refuse_stripped_docstrings() -> None:
    """Ray Data builds its functions from their docstrings: ``python -OO`` (PYTHONOPTIMIZE=2) strips
    them, and its import fails deep inside (after the model was loaded)."""
    if sys.flags.optimize >= 2:
        raise VswinError("--engine ray cannot run under python -OO (PYTHONOPTIMIZE=2): Ray needs docstrings; "
                         "unset PYTHONOPTIMIZE, or use --engine local")


def _connect(ray: Any, address: str | None) -> bool:
    """Join ``address`` (``auto``, ``host:port`` or ``ray://host:10001``) or start a local instance.

    Returns True when this call initialised Ray in this process; the caller then shuts it down
    after the run, which stops a local instance and only disconnects from a cluster.
    """
    if ray.is_initialized():
        return False
    if address and address != "auto":
        _check_reachable(address)
    try:
        ray.init(
            address=address or None,
            ignore_reinit_error=True,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,  # workers' own logs stay in Ray's log folder; errors come back as records
            runtime_env=_code_env(),
        )
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        reason = " ".join(str(error).split()) or error.__class__.__name__
        raise VswinError(f"cannot start or reach {where}: {reason}") from None
    _quiet_ray_data(ray)
    _messages_to_stderr(ray)
    return True


def _messages_to_stderr(ray: Any) -> None:
    """Ray's driver prints the raylet's messages (a worker died, a task will be retried, an actor
    failed to start) to stdout, where they would break the results printed there (a JSON
    document); in a Ray instance vswin started, they go to stderr with its other messages."""
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "to_stderr", False):
        return

    def print_to_stderr(data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        printer({**data, "is_err": True}, *args, **kwargs)

    print_to_stderr.to_stderr = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_to_stderr


def _check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when nothing listens at ``address``."""
    if address.startswith("ray://"):
        try:
            import grpc  # noqa: F401  (Ray Client's transport, in the ray[client] extra)
        except ImportError:
            raise VswinError(f'--ray-address {address} uses Ray Client, which needs: pip install "ray[client]"') from None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # not host:port; let Ray interpret it
    try:
        connection = socket.create_connection((host, int(port)), timeout=5)
    except OSError as error:
        raise VswinError(
            f"cannot reach the Ray cluster at {address} ({error.strerror or error}); "
            "give --ray-address auto, HOST:6379 or ray://HOST:10001"
        ) from None
    with connection:
        if os.environ.get("RAY_USE_TLS", "").lower() in ("1", "true"):
            return  # a TLS handshake comes first; Ray itself will say
        if not _speaks_grpc(connection):
            # e.g. the dashboard's port (8265): Ray would retry for minutes, then time out
            raise VswinError(
                f"--ray-address {address}: something answers there, but not a Ray cluster; give the head's "
                "GCS port (HOST:6379, not the dashboard's 8265), auto, or ray://HOST:10001"
            )


def _speaks_grpc(connection: socket.socket) -> bool:
    """Whether the server at the other end answers HTTP/2's connection preface with its SETTINGS, as
    Ray's GCS and Ray Client servers (gRPC) do at once. A silent server is given the benefit of the doubt."""
    connection.settimeout(5)
    try:
        connection.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # + empty SETTINGS
        reply = b""
        while len(reply) < 4:
            chunk = connection.recv(4 - len(reply))
            if not chunk:
                return False  # closed without a word: not gRPC
            reply += chunk
    except socket.timeout:
        return True
    except OSError:
        return False
    return reply[3] == 4  # a frame header whose type is SETTINGS


def _quiet_ray_data(ray: Any) -> None:
    """The CLI draws its own progress on stderr; Ray Data's bars and banners would mix with it."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # Its error logs are stack traces of what the run's one line already says (``_rows_or_error``).
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)


def _code_env() -> dict[str, Any]:
    """Workers import this very package, shipped from the driver (``py_modules``): the cluster runs
    the driver's code, so records match, and nodes need only the dependencies (torch, OpenCV, PyAV ...).
    Ray accepts local folders only for the whole job, at ``ray.init``."""
    return {"py_modules": [str(Path(__file__).resolve().parent)]}


# --- the pieces shipped to workers ------------------------------------------------------------


def _prepare_row(row: dict[str, Any], preparer: Engine, run: str) -> dict[str, Any]:
    """Decode + preprocess one video with the local engine's own code; never raises for a bad file.

    The task opens ``file``, the path made absolute on the driver (workers run in the folder their
    node was started in, not the user's), and the record keeps ``path`` as the user spelled it.
    A video whose decoding killed the workers of earlier attempts is an error record (``_attempt``).
    """
    item = InputVideo(Path(row["file"]), Path(row["root"]))
    with _attempt(run, row) as deaths:
        if deaths >= _DEATHS_PER_VIDEO:
            prepared = preparer.failed(item, "the decoder crashed on this video (its Ray worker died decoding it)")
        else:
            # Each task holds one CPU (``num_cpus=1`` below) and Ray runs one per CPU: one FFmpeg thread each.
            prepared = preparer.prepare(item, decoder_threads=1)
        prepared.record.path = row["path"]
        views = list(prepared.views)  # first: lazily read windows may still add warnings to the record
    protocol = preparer.protocol
    if views:
        stacked = torch.stack(views).numpy()
    else:  # an error record: no views, but the same rank as the others
        stacked = np.zeros((0, protocol.clip_len, protocol.crop_size, protocol.crop_size, 3), np.uint8)
    return {
        "index": row["index"],
        "path": row["path"],
        "root": row["root"],
        "record": json.dumps(prepared.record.to_dict()),
        "views": stacked,
        "num_crops": prepared.num_crops,
    }


# Workers a video may kill while being decoded (on one node) before it is an error record: one
# death may be the worker's bad luck (killed from outside), two in a row are the video's doing.
_DEATHS_PER_VIDEO = 2


def _attempts_folder(run: str) -> Path:
    return Path(tempfile.gettempdir()) / "vswin-ray-attempts" / run


def _attempt(run: str, row: dict[str, Any]) -> contextlib.AbstractContextManager[int]:
    """How many earlier attempts at ``row`` in this ``run`` died on this node while decoding it.

    Ray Data re-runs a task whose worker died, without limit: right for a lost node, an endless
    loop for a video that crashes FFmpeg (or exhausts memory) every time. Attempts leave crash
    markers (crash_markers.py) in the node's temporary folder; a retry on another node counts
    from zero, so a lost node never fails a video.
    """
    return crash_markers.decoding(_attempts_folder(run), crash_markers.key_of(str(row["index"]), row["file"]))


@dataclasses.dataclass(frozen=True)
class _ModelSpec:
    """Everything a model actor needs to rebuild the driver's model, besides the weights."""

    config: SwinConfig
    labels: list[str] | None
    protocol: Protocol | None
    name: str
    checkpoint_sha256: str | None

    @classmethod
    def of(cls, model: VideoSwin) -> _ModelSpec:
        return cls(model.config, model.labels, model.protocol, model.name, getattr(model, "checkpoint_sha256", None))


class _ModelActor:
    """One model per actor, built once from the weights in the object store; batches views across videos."""

    def __init__(self, weights: list[Any], spec: _ModelSpec, options: RunOptions, threads: int | None) -> None:
        import ray

        if threads:
            torch.set_num_threads(threads)
        model = VideoSwin(spec.config)
        model.load_state_dict(ray.get(weights[0]))  # a list, so Ray hands us the reference, not a copy per call
        model.labels, model.protocol, model.name = spec.labels, spec.protocol, spec.name
        model.checkpoint_sha256 = spec.checkpoint_sha256
        self.engine = Engine(model, options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        prepared = []
        for i in range(len(batch["index"])):
            record = VideoRecord.from_dict(json.loads(str(batch["record"][i])))
            item = InputVideo(Path(str(batch["path"][i])), Path(str(batch["root"][i])))
            views = [torch.from_numpy(np.array(view)) for view in batch["views"][i]]
            prepared.append(PreparedVideo(item, record, views, num_crops=int(batch["num_crops"][i])))
        outcomes = list(self.engine.infer(prepared))
        return {
            "index": np.asarray(batch["index"]),
            "path": np.asarray(batch["path"]),
            "root": np.asarray(batch["root"]),
            "record": np.array([json.dumps(o.record.to_dict()) for o in outcomes], dtype=object),
            "features": _ragged([o.features for o in outcomes]),
            "clip_features": _ragged([o.clip_features for o in outcomes]),
            "scores": _ragged([o.scores for o in outcomes]),
            "clip_scores": _ragged([o.clip_scores for o in outcomes]),
        }


def _ragged(arrays: Sequence[np.ndarray | None]) -> np.ndarray:
    """A column of float32 arrays; a failed video's is empty (Ray Data keeps no None in tensor columns)."""
    column = np.empty(len(arrays), dtype=object)
    for i, array in enumerate(arrays):
        column[i] = np.zeros(0, np.float32) if array is None else np.asarray(array, np.float32)
    return column


def _array_or_none(value: Any) -> np.ndarray | None:
    array = np.asarray(value, dtype=np.float32)
    return None if array.size == 0 else array


# --- the pipeline ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _ActorPlan:
    count: int
    num_gpus: float
    num_cpus: float
    threads: int | None  # torch threads per CPU actor


def _plan_actors(resources: dict[str, float], options: RunOptions, num_actors: int | None) -> _ActorPlan:
    """One actor per GPU when the cluster has GPUs (and the device allows them), else CPU actors
    that leave about half of the cluster's CPUs to decoding.

    The actors never reserve the last CPU: decode tasks each need one, and a cluster whose CPUs
    the actors hold would wait for ever (a 1-CPU machine; as many CPUs as GPUs). Where that
    CPU would be theirs, each actor reserves a share of the rest (none on one CPU); its threads
    still run.
    """
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    wants_gpu = options.device == "cuda" or options.device.startswith("cuda:")
    if options.device == "mps":
        raise VswinError("--device mps is not for --engine ray: Ray gives its actors CUDA GPUs or CPUs; use --device auto, cuda or cpu")
    if wants_gpu and gpus == 0:
        raise VswinError("--device cuda was asked for but the Ray cluster has no GPUs; use --device auto or cpu")
    if wants_gpu or (gpus and options.device == "auto"):
        plan = _ActorPlan(num_actors or gpus, num_gpus=1, num_cpus=1, threads=None)
    else:
        if options.precision == "fp16":  # the driver's own device does not decide: the actors run the model
            raise VswinError("--precision fp16 needs a GPU and the Ray cluster's model actors have none; use bf16 or fp32")
        threads = max(1, min(8, cpus // 2))
        plan = _ActorPlan(num_actors or max(1, cpus // (2 * threads)), num_gpus=0, num_cpus=threads, threads=threads)
    if plan.count * plan.num_cpus > cpus - 1:
        plan = dataclasses.replace(plan, num_cpus=(cpus - 1) / plan.count)
    return plan


def _decode_memory(engine: Engine) -> int:
    """Bytes a decode task reserves: twice one video's views (uint8 crops), plus room for the decoder.

    Declaring it also keeps decoding in its own tasks: Ray Data would otherwise fuse a map whose
    resources equal the actors' into the actors, and decode there one video at a time.
    """
    protocol = engine.protocol
    views = protocol.num_crops * (protocol.num_clips if engine.options.stride is None else 32)
    view_bytes = 3 * protocol.clip_len * protocol.crop_size**2
    return 2 * views * view_bytes + (256 << 20)


def _videos_per_call(engine: Engine, plan: _ActorPlan) -> int:
    """Videos per model call: enough views to fill one model batch when the view count is known."""
    if engine.options.stride is not None:
        return 1  # sliding windows: the number of views depends on each video's length
    device = torch.device("cuda" if plan.num_gpus else "cpu")
    views = max(1, engine.protocol.num_clips * engine.protocol.num_crops)
    return max(1, resolve_batch_size(engine.options.batch_size, device) // views)


def _outcome_rows(ray: Any, engine: Engine, paths: ray.data.Dataset, num_actors: int | None, run: str) -> ray.data.Dataset:
    """Rows ``index, path, root`` -> rows ``index, path, root, record`` (JSON) and the four arrays."""
    model = engine.model
    weights = ray.put({name: tensor.detach().cpu() for name, tensor in model.state_dict().items()})
    plan = _plan_actors(ray.cluster_resources(), engine.options, num_actors)
    # Retries on worker death are Ray Data's defaults: decode tasks are re-run (max_retries=-1),
    # model actors restarted and their batch retried (max_restarts=-1, max_task_retries=-1). A
    # video that kills its decoding worker every time becomes an error record (``_attempt``).
    prepared = paths.map(_prepare_row, fn_kwargs={"preparer": engine.without_model(), "run": run},
                         num_cpus=1, memory=_decode_memory(engine))
    return prepared.map_batches(
        _ModelActor,
        fn_constructor_kwargs={"weights": [weights], "spec": _ModelSpec.of(model), "options": engine.options, "threads": plan.threads},
        batch_size=_videos_per_call(engine, plan),
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.count),
        num_gpus=plan.num_gpus,
        num_cpus=plan.num_cpus,
    )


def _path_rows(ray: Any, items: Sequence[InputVideo]) -> ray.data.Dataset:
    rows = [{"index": i, "path": str(item.path), "file": os.path.abspath(item.path), "root": str(item.root)}
            for i, item in enumerate(items)]
    # Small blocks so decoding spreads over the cluster from the first videos on.
    return ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 10_000)))


def _check_num_actors(num_actors: Any) -> None:
    # 0 would silently mean the default, and Ray's own message for a negative pool is about its internals.
    if num_actors is None:
        return
    if isinstance(num_actors, bool) or not isinstance(num_actors, int):
        raise TypeError(f"num_actors must be an integer or None, not {num_actors!r}")
    if num_actors < 1:
        raise VswinError(f"num_actors must be at least 1 (or None for one per GPU), not {num_actors}")


def run_on_ray(
    engine: Engine,
    items: Sequence[InputVideo],
    address: str | None = None,
    *,
    num_actors: int | None = None,
) -> Iterator[VideoOutcome]:
    """The outcomes ``engine.run(items)`` would give, in input order, computed on a Ray cluster.

    ``address``: ``None`` starts a local Ray instance (shut down after the run), ``"auto"`` or
    ``"ray://host:10001"`` joins a cluster. ``num_actors`` defaults to one per GPU, or a CPU
    plan that keeps about half of the CPUs for decoding.
    """
    _check_num_actors(num_actors)
    ray = import_ray()
    items = list(items)
    return _stream_outcomes(ray, engine, items, address, num_actors)


def _stream_outcomes(ray: Any, engine: Engine, items: list[InputVideo], address: str | None, num_actors: int | None) -> Iterator[VideoOutcome]:
    if not items:
        return
    started = _connect(ray, address)
    run = uuid.uuid4().hex  # names this run's attempt markers (``_attempt``)
    try:
        if not started:
            _quiet_ray_data(ray)
        rows = _outcome_rows(ray, engine, _path_rows(ray, items), num_actors, run)
        waiting: dict[int, VideoOutcome] = {}
        next_index = 0
        for row in _rows_or_error(ray, rows):
            index = int(row["index"])
            waiting[index] = VideoOutcome(
                item=items[index],
                record=VideoRecord.from_dict(json.loads(row["record"])),
                features=_array_or_none(row["features"]),
                clip_features=_array_or_none(row["clip_features"]),
                scores=_array_or_none(row["scores"]),
                clip_scores=_array_or_none(row["clip_scores"]),
            )
            while next_index in waiting:
                yield waiting.pop(next_index)
                next_index += 1
        for index in sorted(waiting):  # only if Ray lost rows, which it does not; never drop a result
            yield waiting.pop(index)
    finally:
        if started:
            ray.shutdown()
        # The markers mean nothing to another run; this node's go (other nodes' stay in their temp folders).
        shutil.rmtree(_attempts_folder(run), ignore_errors=True)


def _rows_or_error(ray: Any, rows: ray.data.Dataset) -> Iterator[dict[str, Any]]:
    """Rows as they finish; a failure of the cluster itself (not of a video) becomes one line."""
    try:
        yield from rows.iter_rows()
    except ray.exceptions.RayError as error:
        # Ray's text prints a chain innermost first: the original exception is the last line before
        # the first "direct cause" banner; what follows is Ray's wrapping and retry advice.
        head = str(error).split("The above exception was the direct cause", 1)[0]
        lines = [line.strip() for line in head.splitlines() if line.strip()]
        reason = lines[-1] if lines else error.__class__.__name__
        refused = reason.removeprefix(f"{VswinError.__module__}.{VswinError.__name__}: ")
        if refused != reason:  # the actors refused an option (a device they lack): a usage error, as on the local engine
            raise VswinError(refused) from None
        raise VswinError(f"the Ray run failed: {reason} (videos finished so far are kept; rerun with --resume)", exit_code=1) from None


# --- Python API -------------------------------------------------------------------------------


def _arrow_type(value: Any) -> Any:
    import pyarrow as pa

    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    if isinstance(value, str):
        return pa.string()
    return pa.int64()  # None: an unset count (``clips`` under --stride)


def _record_schema(views: dict[str, Any], with_features: bool) -> Any:
    """One Arrow schema for every block, so that ``write_parquet`` files read back as one table
    (a block of failed videos alone would otherwise type ``video`` as null)."""
    import pyarrow as pa

    prediction = pa.struct([("rank", pa.int64()), ("index", pa.int64()), ("label", pa.string()), ("score", pa.float64())])
    clip = pa.struct([("start", pa.float64()), ("end", pa.float64()), ("frames", pa.list_(pa.int64())),
                      ("predictions", pa.list_(prediction))])
    video = pa.struct([("frames", pa.int64()), ("fps", pa.float64()), ("duration", pa.float64()),
                       ("width", pa.int64()), ("height", pa.int64()), ("rotation", pa.int64())])
    fields = [
        ("path", pa.string()), ("status", pa.string()), ("error", pa.string()), ("warnings", pa.list_(pa.string())),
        ("model", pa.string()), ("video", video), ("views", pa.struct([(k, _arrow_type(v)) for k, v in views.items()])),
        ("predictions", pa.list_(prediction)), ("clips", pa.list_(clip)),
    ]
    if with_features:
        fields += [("features", pa.list_(pa.float32())), ("clip_features", pa.list_(pa.list_(pa.float32())))]
    return pa.schema(fields)


def _record_table(batch: dict[str, np.ndarray], schema: Any) -> Any:
    import pyarrow as pa

    rows = []
    for i in range(len(batch["record"])):
        row = json.loads(str(batch["record"][i]))
        if "features" in schema.names:
            features = _array_or_none(batch["features"][i])
            clip_features = _array_or_none(batch["clip_features"][i])
            row["features"] = None if features is None else features.tolist()
            row["clip_features"] = None if clip_features is None else clip_features.tolist()
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=schema)


def _with_root(row: dict[str, Any], cwd: str) -> dict[str, Any]:
    """A caller's row -> the engine's; relative paths are relative to the caller's folder ``cwd``."""
    path = str(row["path"])
    root = row.get("root")
    return {"index": row.get("index", 0), "path": path, "file": os.path.join(cwd, path),
            "root": str(root) if root else str(Path(path).parent)}


def driver_engine(
    model: str | Path | VideoSwin | None, labels: str | Path | Iterable[str] | None, options: RunOptions
) -> Engine:
    """The engine of the machine that drives a Ray run (the CLI's or ``classify_dataset``'s).

    It only ships the weights and plans the views, so its model stays on the CPU in float32; its
    ``options`` are the run's, for the actors, whose device and precision the cluster judges
    (``_plan_actors``): a laptop without a GPU can drive GPUs.
    """
    from .engine import _engine_for, _views_dict

    engine = _engine_for(model, labels, dataclasses.replace(options, device="cpu", precision="fp32"))
    engine.options = options
    engine.views = _views_dict(engine.protocol, options.stride, options.precision)  # the actors' precision
    return engine


def classify_dataset(
    data: ray.data.Dataset | Iterable[str | Path],
    model: str | Path | VideoSwin | None = None,
    labels: str | Path | Iterable[str] | None = None,
    *,
    recursive: bool = False,
    with_features: bool = False,
    address: str | None = None,
    num_actors: int | None = None,
    **options: Any,
) -> ray.data.Dataset:
    """Classify (and embed) videos on Ray; a lazy ``ray.data.Dataset`` of the CLI's records.

    ``data`` is a Ray Dataset with a ``path`` column (and optionally ``root``), or paths and
    folders as for ``vswin classify`` (``recursive`` as ``-r``). Each row has the record fields
    (``path``, ``status``, ``error``, ``warnings``, ``model``, ``video``, ``views``,
    ``predictions``, ``clips``); ``with_features`` adds ``features`` (C,) and ``clip_features``
    (N, C), float32 lists (``None`` for failed videos). Every block has the same Arrow schema,
    so ``write_parquet`` output reads back as one table. ``options`` are :class:`RunOptions` fields
    (``clips``, ``crops``, ``clip_len``, ``frame_interval``, ``stride``, ``device``, ``top_k``...).

    Ray is joined at ``address`` (or started here) if it is not running yet, and left running:
    the dataset is computed when it is consumed (``write_parquet``, ``iter_rows``, ``take``...).
    """
    from .engine import _paths_list, _restorer, _run_options

    _check_num_actors(num_actors)
    ray = import_ray()
    run_options = _run_options(options)  # the local API's checks: an integer is an integer...
    # A caller's loaded model goes back to its device and mode once its weights are in the object
    # store (the dataset is lazy, but nothing later reads the driver's copy).
    restore = _restorer(model)
    try:
        engine = driver_engine(model, labels, run_options)
        if not with_features:
            engine.require_classifier()
        if not ray.is_initialized():
            _connect(ray, address)
        if isinstance(data, ray.data.Dataset):
            if "path" not in data.columns():
                raise VswinError("the dataset needs a 'path' column with the video paths")
            paths = data.map(_with_root, fn_kwargs={"cwd": os.getcwd()})
        else:
            items = discover(_paths_list(data), recursive=recursive).videos
            if not items:
                raise VswinError("no videos found in the given paths")
            paths = _path_rows(ray, items)
        # A lazy dataset has no end here to remove its attempt markers at: they stay in the temp folders.
        rows = _outcome_rows(ray, engine, paths, num_actors, uuid.uuid4().hex)
    finally:
        restore()
    schema = _record_schema(engine.views, with_features)
    return rows.map_batches(_record_table, fn_kwargs={"schema": schema}, batch_format="numpy")
