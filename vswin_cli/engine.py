"""The inference engine shared by classify and extract-features.

For each video: decode the frames its clip plan needs, preprocess them into views (clips x
crops), run the views through the model in batches (across videos), and aggregate as the
official test protocol does: softmax per view, mean over views. Per clip (or sliding window),
the mean over its crops gives the timeline. Features are the pooled backbone output per view,
averaged the same way, so ``head(features)`` of a single view is exactly that view's logits.

Decoding and preprocessing of the next videos run in threads (or, when asked, processes) while
the model works (prefetch.py); at most a few videos' views are held at once, so memory does not grow
with the number of videos.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import math
import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from . import allocator, prefetch
from .errors import VswinError
from .inputs import InputVideo, discover
from .model import VideoSwin
from .protocol import KINETICS, Protocol
from .records import ClipResult, VideoRecord, top_k_predictions


# Sliding windows at most this close (seconds): far below any frame step, and far enough above 0
# that the window times stay distinct numbers (a stride of 1e-30 never reached the next frame).
MIN_STRIDE = 0.001


@dataclass(frozen=True)
class RunOptions:
    """How videos become views and where the model runs; ``None`` means the model's protocol default."""

    clips: int | None = None
    crops: int | None = None
    clip_len: int | None = None
    frame_interval: int | None = None
    stride: float | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | str = "auto"
    top_k: int = 5
    decode_workers: int | None = None
    decoders: str = "auto"  # auto (= threads) or processes: slower, but a crashing decoder costs one video

    def __post_init__(self) -> None:
        checks = [
            (self.clips is None or self.clips >= 1, "--clips must be at least 1"),
            (self.crops in (None, 1, 3), "--crops must be 1 or 3"),
            (self.clip_len is None or self.clip_len >= 1, "--clip-len must be at least 1"),
            (self.frame_interval is None or self.frame_interval >= 1, "--frame-interval must be at least 1"),
            (self.stride is None or (self.stride > 0 and math.isfinite(self.stride)), "--stride must be a positive number of seconds"),
            (self.stride is None or not self.stride < MIN_STRIDE, f"--stride must be at least {MIN_STRIDE:g} seconds"),
            (self.clips is None or self.stride is None, "--clips and --stride exclude each other: --stride gives a window "
                                                        "every SECONDS over the whole video, --clips that many uniform clips"),
            (self.top_k >= 1, "--top-k must be at least 1"),
            (known_device(self.device), "--device must be auto, cpu, cuda, cuda:N or mps"),
            (self.precision in ("auto", "fp32", "fp16", "bf16"), "--precision must be auto, fp32, fp16 or bf16"),
            (self.decoders in ("auto", "threads", "processes"), "decoders must be auto, threads or processes"),
            (self.decode_workers is None or self.decode_workers >= 1, "--decode-workers must be at least 1"),
            (self.batch_size == "auto" or (isinstance(self.batch_size, int) and self.batch_size >= 1), "--batch-size must be a positive number or auto"),
        ]
        for ok, message in checks:
            if not ok:
                raise VswinError(message)


@dataclass
class VideoOutcome:
    """Everything computed for one video: its record, and the arrays feature extraction writes."""

    item: InputVideo
    record: VideoRecord
    features: np.ndarray | None = None  # (C,) mean over all views
    clip_features: np.ndarray | None = None  # (N, C) mean over each clip's crops
    scores: np.ndarray | None = None  # (classes,) mean softmax over all views
    clip_scores: np.ndarray | None = None  # (N, classes)


# --- where and how the model runs -------------------------------------------------------------


def known_device(name: str) -> bool:
    """Whether ``name`` is a device vswin runs on (``resolve_device`` then says whether this machine has it)."""
    return name in ("auto", "cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit())


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise VswinError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if requested.startswith("cuda:") and int(requested[5:]) >= torch.cuda.device_count():
        raise VswinError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise VswinError("--device mps was asked for but MPS is not available; use --device cpu or auto")
    return torch.device(requested)


def resolve_precision(requested: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``--precision``; the model keeps its residual stream and outputs float32.

    ``auto`` is float32 everywhere. It would pick a reduced precision only where that stays
    within the parity tolerance vswin promises (probabilities within 1e-4 of the official
    model); bfloat16 does not: on CPUs with bfloat16 units it keeps the top-5 identical to
    float32 and every logit within 0.02 (benchmarks/precision.py, full-size Swin-T), so every
    probability within 4% of its float32 value, while running 1.5x faster. Ask for it with
    ``--precision bf16``. On an H200, bf16 moved logits as much as on the CPU and fp16 by at most
    0.0025 (probabilities within 0.5%), both 3x faster than float32: also outside the promise.
    """
    if requested in ("auto", "fp32"):
        return torch.float32
    if requested == "fp16":
        if device.type == "cpu":
            raise VswinError("--precision fp16 needs a GPU; on the CPU use bf16 or fp32")
        return torch.float16
    return torch.bfloat16


# Peak memory of one 32x224x224 view through Swin-B in float32 (activations of stage 1 plus
# attention workspace), rounded up; Swin-T needs about half. Used to size CUDA batches.
_BYTES_PER_VIEW = 768 * 2**20


def resolve_batch_size(requested: int | str, device: torch.device) -> int:
    """Views per model call for ``--batch-size``.

    ``auto``: 1 on the CPU (one view keeps the cores busy; batches of 2 gave no consistent gain per
    view); on CUDA as many as half the free memory holds at the per-view estimate, 1 to 64;
    4 on MPS.
    """
    if requested != "auto":
        return int(requested)
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
        except Exception:  # no usable context: a size that fits any current GPU
            return 8
        return max(1, min(64, int(free // 2 // _BYTES_PER_VIEW)))
    return {"cpu": 1, "mps": 4}.get(device.type, 8)


# --- the per-video work done off the model thread ---------------------------------------------


@dataclass
class PreparedVideo:
    """One video decoded and preprocessed, ready for the model (or an error record).

    ``views`` yields uint8 (T, H, W, 3) crops clip by clip, each clip's crops together; the
    model's side normalises them. For uniform clips they are computed ahead in a worker; for
    sliding windows they are decoded lazily as the model consumes them, so a long video never
    sits in memory.
    """

    item: InputVideo
    record: VideoRecord
    views: Iterable[torch.Tensor] = ()
    num_crops: int = 1
    views_left_behind: bool = False  # decoded in a worker process, not sent back (prefetch._prepare_in_worker)


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not on this platform
        return None


def _check_view_memory(protocol: Protocol, stride: float | None) -> None:
    """VswinError when one video's float32 views (one window's with --stride) cannot fit in this
    machine's memory: --clip-len 10**9 would otherwise plan a billion frame indices and be killed."""
    clips = 1 if stride is not None or protocol.sampling == "uniform" else protocol.num_clips
    views_bytes = clips * protocol.num_crops * 3 * protocol.clip_len * protocol.crop_size**2 * 4
    memory = _physical_memory()
    if memory is not None and views_bytes > memory:
        held = "one window" if stride is not None else "one video"
        raise VswinError(
            f"{clips} clip(s) x {protocol.num_crops} crop(s) of {protocol.clip_len} frames need {views_bytes / 1e9:,.0f} GB "
            f"of views for {held}, more than this machine's {memory / 1e9:,.0f} GB of memory; lower --clip-len or --clips"
        )


def _views_dict(protocol: Protocol, stride: float | None, precision: str = "auto") -> dict[str, Any]:
    """A record's ``views``: what --resume compares to decide that a record is this run's result.
    A reduced precision is named (its probabilities differ from float32's by up to a few percent);
    float32, the default, is not, as in records written before precision was named."""
    views: dict[str, Any] = {
        "clips": protocol.num_clips,
        "crops": protocol.num_crops,
        "clip_len": protocol.clip_len,
        "frame_interval": protocol.frame_interval,
    }
    if protocol.sampling != "clips":
        views["sampling"] = protocol.sampling
    if stride is not None:
        views["clips"] = None
        views["stride"] = stride
    if precision in ("bf16", "fp16"):
        views["precision"] = precision
    return views


class Engine:
    """Runs one model over many videos with one protocol; yields a :class:`VideoOutcome` per video."""

    def __init__(self, model: VideoSwin, options: RunOptions = RunOptions()) -> None:
        allocator.keep_freed_memory()  # once per process: forwards reuse memory instead of faulting it in
        self.options = options
        self.device = resolve_device(options.device)
        self.dtype = resolve_precision(options.precision, self.device)
        self.batch_size = resolve_batch_size(options.batch_size, self.device)
        self.model = model.to(self.device).eval()
        base = model.protocol or KINETICS
        self.protocol = base.with_overrides(
            num_clips=options.clips,
            num_crops=options.crops,
            clip_len=options.clip_len,
            frame_interval=options.frame_interval,
        )
        if self.protocol.sampling == "uniform" and options.stride is None:
            ignored = [flag for flag, value in (("--clips", options.clips), ("--frame-interval", options.frame_interval)) if value is not None]
            if ignored:
                raise VswinError(
                    f"{' and '.join(ignored)} do not apply to {model.name}: its protocol takes --clip-len frames spread "
                    "over the whole video (Something-Something v2), in one clip; use --clip-len, or --stride for windows"
                )
        _check_view_memory(self.protocol, options.stride)
        self.labels = model.labels or [f"class_{i}" for i in range(model.config.num_classes)]
        self.views = _views_dict(self.protocol, options.stride, options.precision)
        self.model_name = model.name
        # A backbone-only checkpoint (no classifier head) gives features and no class scores.
        self.classifies = model.config.num_classes > 0

    def require_classifier(self, purpose: str = "classify", instead: str = "use extract-features for its features") -> None:
        """VswinError (exit 2) when the model has no classifier head, so ``purpose`` cannot work."""
        if not self.classifies:
            raise VswinError(
                f"{self.model_name} has no classifier head (a backbone-only checkpoint), so it cannot {purpose}; "
                f"{instead}, or a checkpoint that includes the head"
            )

    # decoding + preprocessing (runs in worker threads, or in Ray tasks)
    def prepare(self, item: InputVideo, decoder_threads: int = 0) -> PreparedVideo:
        """Decode and preprocess one video; any failure becomes an error record, never an exception.

        ``decoder_threads``: FFmpeg's threads for the file (0: one per core; see ``prefetch.decoder_threads``).
        """
        from . import sampling, transforms, video

        record = VideoRecord(path=str(item.path), status="ok", error=None, warnings=[], model=self.model_name,
                             video=None, views=dict(self.views), predictions=[], clips=[])
        prepared = PreparedVideo(item, record, num_crops=self.protocol.num_crops)
        protocol, stride = self.protocol, self.options.stride

        def plan(info: video.VideoInfo) -> list[sampling.Clip]:
            transforms.check_aspect_ratio(info.width, info.height)  # before any frame is kept
            return sampling.plan_clips(info.frames, info.timestamps, info.fps, protocol, stride=stride)

        # Frames are resized once as they are decoded, however many clips share them.
        resize = transforms.short_side_resizer(protocol)
        try:
            if stride is None:
                decoded = video.read_video(item.path, plan, frame_transform=resize, decoder_threads=decoder_threads)
                info, clips = decoded.info, decoded.clips
                views: list[torch.Tensor] = []
                for clip in clips:
                    views.extend(transforms.crop_clip(decoded.clip_frames(clip), protocol).unbind(0))
                prepared.views = views
            else:
                info, clips, stream = video.iter_clips(item.path, plan, frame_transform=resize, decoder_threads=decoder_threads)
                prepared.views = self._lazy_views(stream, record)
            if not clips:
                raise VswinError("no clip could be planned for this video")
            record.video = info.as_record()
            record.warnings.extend(info.warnings)
            shortfall = sampling.shortfall_warning(info.frames, protocol, stride)
            if shortfall:
                record.warnings.append(shortfall)
            # Milliseconds, as the video's duration: 0.467, not 0.4666666666666667 from frame times.
            record.clips = [ClipResult(start=round(c.start, 3), end=round(c.end, 3), frames=list(c.frames)) for c in clips]
        except VswinError as error:
            # The record already names the file; keep just the reason.
            _fail(record, str(error).removeprefix(f"{item.path}: "))
            prepared.views = ()
        except MemoryError:
            _fail(record, "out of memory while decoding this video")
            prepared.views = ()
        except Exception as error:  # a bad file must never stop the batch
            _fail(record, f"could not process this video ({error.__class__.__name__}: {error})")
            prepared.views = ()
        return prepared

    def failed(self, item: InputVideo, reason: str) -> PreparedVideo:
        """What :meth:`prepare` gives for a video it could not decode: its error record, no views."""
        record = VideoRecord(path=str(item.path), status="ok", model=self.model_name, views=dict(self.views))
        _fail(record, reason)
        return PreparedVideo(item, record)

    def _lazy_views(self, stream: Iterator[tuple[Any, list[np.ndarray]]], record: VideoRecord) -> Iterator[torch.Tensor]:
        from . import transforms

        done = 0
        try:
            for _, frames in stream:
                yield from transforms.crop_clip(frames, self.protocol).unbind(0)
                done += 1
        except Exception as error:  # keep the windows already read; say why the rest is missing
            record.warnings.append(f"decoding stopped after {done} window(s): {' '.join(str(error).split())}")

    def without_model(self) -> "Engine":
        """This engine minus its model: all that :meth:`prepare` reads, small enough to send to workers."""
        light = copy.copy(self)
        light.model = None  # type: ignore[assignment]
        return light

    def decodes_in_processes(self, videos: int) -> bool:
        """Whether :meth:`run` decodes in worker processes (``RunOptions.decoders``; see prefetch.py).

        Only when asked for, for more than one video, and not for sliding windows: those are read
        lazily as the model consumes them, so they stay in threads.
        """
        return self.options.decoders == "processes" and self.options.stride is None and videos > 1

    def decoding_plan(self, videos: int) -> tuple[bool, int, int]:
        """How :meth:`run` decodes ``videos`` videos: (in processes, how many decoders, FFmpeg threads each)."""
        processes = self.decodes_in_processes(videos)
        workers = self.options.decode_workers or prefetch.default_workers(processes, gpu=self.device.type != "cpu")
        return processes, workers, prefetch.decoder_threads(workers)

    def _prefetch(self, items: Sequence[InputVideo]) -> Iterator[PreparedVideo]:
        processes, workers, threads = self.decoding_plan(len(items))
        if processes:
            return prefetch.in_processes(self.without_model(), items, workers, threads)
        return prefetch.in_threads(prefetch.remembering_crashes(self, threads), items, workers)

    # the model (runs on the calling thread)
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _run_views(self, batch: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, C), probabilities (B, classes)) in float32 on the CPU."""
        from .transforms import normalize_views

        x = normalize_views(torch.stack(batch).to(self.device))  # uint8 crops travel; floats are made there
        with torch.inference_mode(), self._autocast():
            features = self.model.forward_features(x)
            if not self.classifies:
                return features.float().cpu(), torch.zeros((len(batch), 0))
            logits = self.model.classify_features(features)
        return features.float().cpu(), torch.softmax(logits.float(), dim=-1).cpu()

    def run(self, items: Sequence[InputVideo], skip: Callable[[InputVideo], bool] | None = None) -> Iterator[VideoOutcome]:
        """Outcomes in the order of ``items`` (those ``skip`` says are done are left out)."""
        todo = [item for item in items if not (skip and skip(item))]
        return self.infer(self._prefetch(todo))

    def infer(self, prepared_videos: Iterable[PreparedVideo]) -> Iterator[VideoOutcome]:
        """Run prepared videos through the model, views batched across videos; outcomes in input order."""
        waiting: collections.deque[_Pending] = collections.deque()
        queue: list[tuple[_Pending, torch.Tensor]] = []

        def flush() -> None:
            if queue:
                features, probs = self._run_views([view for _, view in queue])
                for (pending, _), f, p in zip(queue, features, probs):
                    pending.receive(f, p)
                queue.clear()

        def finished() -> Iterator[VideoOutcome]:
            while waiting and waiting[0].complete():
                yield self._finish(waiting.popleft())

        for prepared in prepared_videos:
            pending = _Pending(prepared, prepared.num_crops)
            waiting.append(pending)
            for view in prepared.views:
                queue.append((pending, view))
                pending.queued += 1
                if len(queue) >= self.batch_size:
                    flush()
                    yield from finished()
            pending.exhausted = True
            prepared.views = ()
            yield from finished()
        flush()
        yield from finished()

    def _finish(self, pending: "_Pending") -> VideoOutcome:
        prepared = pending.prepared
        record = prepared.record
        outcome = VideoOutcome(prepared.item, record)
        if record.status == "ok" and not pending.clip_features:
            _fail(record, "no frames could be read for any clip")
        if record.status != "ok":
            return outcome
        k = min(self.options.top_k, len(self.labels))
        num_clips = len(pending.clip_features)
        clip_features = torch.stack(pending.clip_features)  # (clips, C): each the mean over its crops
        clip_scores = torch.stack(pending.clip_probs)
        # A NaN or infinity in any view is one in its clip's mean too.
        if not (torch.isfinite(clip_features).all() and torch.isfinite(clip_scores).all()):
            # NaN or infinity from damaged weights or an overflow in reduced precision: not a result.
            hint = "" if self.dtype == torch.float32 else "; try --precision fp32"
            _fail(record, f"the model gave non-finite outputs (NaN or infinity): damaged weights?{hint}")
            return outcome
        # The mean over all views: every clip has the same number of crops.
        outcome.features = clip_features.mean(dim=0).numpy()
        outcome.scores = clip_scores.mean(dim=0).numpy()
        outcome.clip_features = clip_features.numpy()
        outcome.clip_scores = clip_scores.numpy()
        record.predictions = top_k_predictions(outcome.scores, self.labels, k)
        record.clips = [
            ClipResult(start=c.start, end=c.end, frames=c.frames, predictions=top_k_predictions(s.numpy(), self.labels, k))
            for c, s in zip(record.clips[:num_clips], clip_scores)
        ]
        return outcome


@dataclass
class _Pending:
    """A video whose views are in flight: results so far, and whether all its views were queued.

    Views arrive clip by clip (view = clip * crops + crop); each clip is reduced to the mean over
    its crops as soon as they are all in, so a long video's sliding windows hold one feature and
    one score vector per window, not per view (nor the batches those came in).
    """

    prepared: PreparedVideo
    crops: int
    clip_features: list[torch.Tensor] = field(default_factory=list)
    clip_probs: list[torch.Tensor] = field(default_factory=list)
    queued: int = 0
    received: int = 0
    exhausted: bool = False
    _crop_features: list[torch.Tensor] = field(default_factory=list)
    _crop_probs: list[torch.Tensor] = field(default_factory=list)

    def receive(self, features: torch.Tensor, probs: torch.Tensor) -> None:
        """One view's outputs; a clip's last crop completes the clip (views of a clip left incomplete are dropped)."""
        self.received += 1
        self._crop_features.append(features)
        self._crop_probs.append(probs)
        if len(self._crop_features) == self.crops:
            self.clip_features.append(torch.stack(self._crop_features).mean(dim=0))
            self.clip_probs.append(torch.stack(self._crop_probs).mean(dim=0))
            self._crop_features, self._crop_probs = [], []

    def complete(self) -> bool:
        return self.exhausted and self.received == self.queued


def _fail(record: VideoRecord, reason: str) -> None:
    record.status = "error"
    record.error = " ".join(reason.split()) or "unknown error"
    record.clips = []
    record.predictions = []


# --- Python API -------------------------------------------------------------------------------


def _engine_for(model: str | Path | VideoSwin | None, labels: str | Path | Iterable[str] | None, options: RunOptions) -> Engine:
    """An engine for ``model`` (a loaded model, or a reference for ``load_model``).

    A loaded model's own labels are left as they are: ``labels`` go to a shallow copy, which
    shares the weights.
    """
    import os

    from .loading import choose_labels, label_list, load_model

    if isinstance(model, VideoSwin):
        names = label_list(labels)
        if names is not None:
            model = copy.copy(model)  # own attributes (labels), same modules and weights
            model.labels = choose_labels(model, names)
        return Engine(model, options)
    if not (model is None or isinstance(model, (str, os.PathLike))):
        raise TypeError(
            f"model must be a name, hf://owner/repo, a checkpoint path or a model from vswin_cli.load_model, not {type(model).__name__}"
        )
    return Engine(load_model(model, labels=labels), options)


_INT_OPTIONS = ("clips", "crops", "clip_len", "frame_interval", "top_k", "decode_workers")
_STR_OPTIONS = ("device", "precision", "decoders")


def _run_options(options: dict[str, Any]) -> RunOptions:
    """Keyword arguments of :func:`classify` / :func:`extract_features` -> :class:`RunOptions`, types checked.

    Integers must be integers (a float ``clips`` would otherwise fail each video later), and a
    ``torch.device`` is taken for ``device``.
    """
    import numbers

    known = list(RunOptions.__dataclass_fields__)
    unknown = [name for name in options if name not in known]
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(map(repr, unknown))}; the options are {', '.join(known)}")
    values = dict(options)
    for name in _INT_OPTIONS:
        if name not in values or (values[name] is None and name != "top_k"):
            continue  # None: the protocol's default (top_k has a number for its default)
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, not {value!r}")
        values[name] = int(value)
    stride = values.get("stride")
    if stride is not None:
        if isinstance(stride, bool) or not isinstance(stride, numbers.Real):
            raise TypeError(f"stride must be a number of seconds, not {stride!r}")
        values["stride"] = float(stride)
    batch_size = values.get("batch_size", "auto")
    if batch_size != "auto":
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise TypeError(f"batch_size must be an integer or 'auto', not {batch_size!r}")
        values["batch_size"] = int(batch_size)
    if isinstance(values.get("device"), torch.device):
        values["device"] = str(values["device"])
    for name in _STR_OPTIONS:
        if name in values and not isinstance(values[name], str):
            raise TypeError(f"{name} must be a str, not {values[name]!r}")
    return RunOptions(**values)


def _paths_list(paths: str | Path | Iterable[str | Path]) -> list[str | Path]:
    """One path, or any iterable of paths -> a list (a str is one path, never its characters)."""
    import os

    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    if isinstance(paths, bytes):
        raise TypeError("paths must be str or Path, not bytes")
    try:
        items = list(paths)
    except TypeError:
        raise TypeError(f"paths must be a path or an iterable of paths, not {type(paths).__name__}") from None
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"paths must be str or Path, found {item!r} ({type(item).__name__})")
    return items


def _videos(paths: str | Path | Iterable[str | Path], recursive: bool) -> list[InputVideo]:
    """The videos under ``paths``; sub-folders left out (no ``recursive``) are worth a warning, as in the CLI."""
    import warnings

    found = discover(_paths_list(paths), recursive=recursive)
    if found.skipped_folders and not recursive:
        warnings.warn(f"skipped {found.skipped_folders} sub-folder(s); pass recursive=True to include them", stacklevel=3)
    for folder, why in found.unlisted_folders:
        warnings.warn(f"could not list {folder} ({why}), so the videos in it are left out", stacklevel=3)
    return found.videos


# Calls running on a caller's model (threads, or generators consumed in turn): id -> [calls,
# device, [(module, training) for each of its modules]] as the model was before the first of them.
_models_in_use: dict[int, list[Any]] = {}
_models_in_use_lock = threading.Lock()


def _restorer(model: Any) -> Callable[[], None]:
    """What undoes the engine's changes to a caller's model: it moves the model to the run's device,
    in eval mode; this puts it back on its device, each module in its own mode. Calls that overlap
    on one model share one record of its state, and the last of them to end restores it (the first
    to end would pull the model from under the others). Calling the result more than once does
    nothing more."""
    if not isinstance(model, VideoSwin):
        return lambda: None
    key = id(model)
    with _models_in_use_lock:
        state = _models_in_use.get(key)
        if state is None:
            parameter = next(model.parameters(), None)
            # Each module's own mode: a model being fine-tuned may keep frozen parts in eval mode.
            modes = [(module, module.training) for module in model.modules()]
            state = _models_in_use[key] = [0, None if parameter is None else parameter.device, modes]
        state[0] += 1
    ended = False

    def restore() -> None:
        nonlocal ended
        with _models_in_use_lock:
            if ended:
                return
            ended = True
            state[0] -= 1
            if state[0]:
                return  # another call still runs on the model
            del _models_in_use[key]
        if state[1] is not None:
            model.to(state[1])
        for module, training in state[2]:
            module.training = training

    return restore


def classify(
    paths: str | Path | Iterable[str | Path],
    model: str | Path | VideoSwin | None = None,
    labels: str | Path | Iterable[str] | None = None,
    recursive: bool = False,
    **options: Any,
) -> list[dict[str, Any]]:
    """Classify videos; the same records (as dicts) the CLI writes, one per video, in input order.

    ``paths``: a file or folder, or an iterable of them (a path given twice is done once).
    ``model``: a registry name, ``hf://...``, a checkpoint path, None (the registry's default) or
    a model from :func:`load_model` (left on its device and in its mode afterwards). ``labels``: a file or the class names.
    ``options`` are :class:`RunOptions` fields: ``clips``, ``crops``, ``clip_len``,
    ``frame_interval``, ``stride``, ``device``, ``precision``, ``batch_size``, ``top_k``,
    ``decode_workers``, ``decoders``.
    """
    run_options = _run_options(options)
    items = _videos(paths, recursive)
    restore = _restorer(model)
    try:
        engine = _engine_for(model, labels, run_options)
        engine.require_classifier()
        return [outcome.record.to_dict() for outcome in engine.run(items)]
    finally:
        restore()


def extract_features(
    paths: str | Path | Iterable[str | Path],
    model: str | Path | VideoSwin | None = None,
    per_clip: bool = False,
    recursive: bool = False,
    labels: str | Path | Iterable[str] | None = None,
    **options: Any,
) -> Iterator[tuple[str, np.ndarray | None, dict[str, Any]]]:
    """Yield ``(path, features, record)`` per video: float32 features (C,) or, with ``per_clip``, (N, C); None on error.

    Arguments as for :func:`classify`. Options, paths and the model are checked (and the model
    loaded) when this is called; the videos are processed as the result is iterated.
    """
    run_options = _run_options(options)
    items = _videos(paths, recursive)
    restore = _restorer(model)
    try:
        engine = _engine_for(model, labels, run_options)
    except BaseException:
        restore()
        raise
    outcomes = _feature_outcomes(engine, items, per_clip, restore)
    weakref.finalize(outcomes, restore)  # a generator dropped before it started runs no finally
    return outcomes


def _feature_outcomes(
    engine: Engine, items: list[InputVideo], per_clip: bool, restore: Callable[[], None]
) -> Iterator[tuple[str, np.ndarray | None, dict[str, Any]]]:
    try:
        for outcome in engine.run(items):
            array = outcome.clip_features if per_clip else outcome.features
            yield str(outcome.item.path), array, outcome.record.to_dict()
    finally:
        restore()
