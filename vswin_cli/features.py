"""Feature files of extract-features: ``.npy`` per video, a sidecar JSON, and ``index.jsonl``."""

from __future__ import annotations

import errno
import json
import os
from contextlib import suppress
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .atomic_files import user_io, write_json_atomic, write_npy_atomic, write_protected
from .engine import Engine, VideoOutcome
from .errors import VswinError
from .feature_index import FeatureEntry, feature_path, open_feature_index, plan_feature_paths, scores_path, sidecar_path
from .inputs import InputVideo
from .journals import _canonical
from .records import VideoRecord


# A sidecar holds these keys; a larger file is not one (an hour of 1-second windows is about 300 kB).
_SIDECAR_KEYS = frozenset({"model", "protocol", "views", "shape", "dtype"})
_SIDECAR_MAX_BYTES = 64 << 20


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path`` (a sidecar, or another tool's file), or None (gone, damaged, too large)."""
    try:
        if not path.is_file() or path.stat().st_size > _SIDECAR_MAX_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _npy_layout(path: Path) -> tuple[list[int], str] | None:
    """The shape and dtype a .npy file's header gives, or None (gone, not a .npy)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
    except (OSError, ValueError):
        return None
    return list(shape), dtype.name


def _files_of(target: Path) -> tuple[Path, Path, Path]:
    """A video's files: its .npy, sidecar and scores."""
    return target, sidecar_path(target), scores_path(target)


def feature_files(out_dir: Path, videos: Sequence[InputVideo]) -> list[Path]:
    """Every file a run may write (or remove as stale) for ``videos`` in ``out_dir``: each .npy,
    its sidecar and scores, under the plain name and the hashed one the index may call for."""
    files = []
    for video in videos:
        for hashed in (False, True):
            npy = feature_path(Path(out_dir), video.path, video.root, disambiguate=hashed)
            files += _files_of(npy)
    return files


class FeatureWriter:
    """Writes each finished video's arrays (atomically) and its index line; knows what --resume may skip."""

    def __init__(
        self,
        out_dir: Path,
        videos: Sequence[InputVideo],
        engine: Engine,
        *,
        resume: bool = False,
        per_clip: bool = False,
        dtype: str = "float32",
        with_scores: bool = False,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.engine = engine
        self.per_clip = per_clip
        self.dtype = np.dtype(dtype)
        self.with_scores = with_scores
        self.views = {**engine.views, "per_clip": per_clip, "dtype": self.dtype.name, "with_logits": with_scores}
        with user_io(self.out_dir):
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.index = open_feature_index(self.out_dir, resume=resume, model=engine.model_name, views=self.views)
        # With --resume, names the index gives to other videos stay theirs (a folder filled by
        # several runs over different roots): a clash gets the hashed name instead.
        paths = plan_feature_paths([(v.path, v.root) for v in videos], self.out_dir, taken=self.index.taken())
        self._targets = {str(v.path): p for v, p in zip(videos, paths)}

    def done(self, item: InputVideo) -> bool:
        output = self.index.output_of(item.path)
        if output is None or not self.index.done(item.path):
            return False
        # The files must still be this index's: another run into a folder inside this one
        # (-o feats/cats after -o feats) may have replaced them since, with other settings.
        sidecar = _read_sidecar(sidecar_path(output))
        if sidecar is None or not self._made_like_this_run(sidecar) or _npy_layout(output) != (sidecar.get("shape"), self.dtype.name):
            return False
        # The scores' columns are named by the sidecar's labels: with other class names (--labels)
        # the video is redone, as classify redoes it, so that one folder never holds two label sets.
        return not self.with_scores or sidecar.get("labels") == list(self.engine.labels)

    def _made_like_this_run(self, sidecar: dict[str, Any]) -> bool:
        return sidecar.get("model") == self.engine.model_name and _canonical(sidecar.get("views")) == _canonical(self.views)

    def add(self, outcome: VideoOutcome) -> bool:
        """Write one video's files; False when the video failed (an error line in the index)."""
        record = outcome.record
        target = self._targets[str(outcome.item.path)]
        foreign = self._not_written_by_vswin(target)
        if record.status != "ok" or outcome.features is None:
            # Files an earlier run left for this video would pass for its features now.
            if foreign is None:
                self._remove(*_files_of(target))
            return self._failed(record, record.error)
        if foreign is not None:
            return self._failed(record, f"{foreign} is in the way of its features: vswin did not write that file; "
                                        "move it away or give another -o folder")
        protected = next((p for p in _files_of(target) if write_protected(p)), None)
        if protected is not None:
            return self._failed(record, f"{protected}, which would hold its features, is read-only; make it writable "
                                        "(chmod u+w) or give another -o folder")
        array = outcome.clip_features if self.per_clip else outcome.features
        with np.errstate(over="ignore"):  # said below, in the video's record, not as NumPy's warning
            array = np.ascontiguousarray(array, dtype=self.dtype)
        if not np.isfinite(array).all():  # the float32 features are finite (the engine checks): float16 overflowed
            self._remove(*_files_of(target))  # vswin's own (checked above)
            largest = float(np.abs(outcome.clip_features if self.per_clip else outcome.features).max())
            return self._failed(record, f"its features reach {largest:.4g}, beyond {self.dtype.name}'s range "
                                        f"(±{float(np.finfo(self.dtype).max):.0f}); use --dtype float32")
        self.index.replacing(record.path)
        sidecar = sidecar_path(target)
        try:
            self._write_files(target, sidecar, outcome, array)
        except VswinError as error:
            # Half a video's files (vswin's own, checked above) would pass for its features.
            for path in _files_of(target):
                with suppress(OSError):
                    path.unlink()
            if getattr(error.__cause__, "errno", None) != errno.ENAMETOOLONG:
                raise  # a full disk, a read-only folder: the run's to stop
            # This video's mirrored path is longer than the file system takes: its failure alone.
            return self._failed(record, f"its features file would be {target} ({len(os.fsencode(os.path.abspath(target)))} "
                                        "bytes), a path longer than the file system takes; give -o a shorter folder")
        self.index.add(FeatureEntry(
            path=record.path, status="ok", warnings=record.warnings, model=self.engine.model_name, views=self.views,
            output=self.index.relative(target), sidecar=self.index.relative(sidecar),
            shape=list(array.shape), dtype=self.dtype.name,
        ))
        return True

    def _failed(self, record: VideoRecord, error: str | None) -> bool:
        """The video's error line in the index; False, as :meth:`add` returns for a failed video."""
        self.index.add(FeatureEntry(path=record.path, status="error", error=error, warnings=record.warnings,
                                    model=self.engine.model_name, views=self.views))
        return False

    def _write_files(self, target: Path, sidecar: Path, outcome: VideoOutcome, array: np.ndarray) -> None:
        # The sidecar first: whatever a run stopped halfway leaves beside it is known to be vswin's.
        with user_io(sidecar):
            target.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(sidecar, self._sidecar(outcome, array))
        with user_io(target):
            write_npy_atomic(target, array)
        if self.with_scores:
            scores = outcome.clip_scores if self.per_clip else outcome.scores
            with user_io(scores_path(target)):
                write_npy_atomic(scores_path(target), np.ascontiguousarray(scores, dtype=np.float32))
        else:
            self._remove(scores_path(target))  # an earlier run's, for other views

    def _not_written_by_vswin(self, target: Path) -> Path | None:
        """A file among the video's three (.npy, sidecar, scores) that vswin did not write, or None.
        They are vswin's when the sidecar is a vswin sidecar, or the index names the file."""
        sidecar = sidecar_path(target)
        if os.path.lexists(sidecar):
            data = _read_sidecar(sidecar)
            return None if data is not None and _SIDECAR_KEYS <= data.keys() else sidecar
        if self.index.names(target):
            return None
        return next((path for path in (target, scores_path(target)) if os.path.lexists(path)), None)

    @staticmethod
    def _remove(*paths: Path) -> None:
        for path in paths:
            with user_io(path, "remove"):
                if path.is_file() and not write_protected(path):  # a file made read-only is left as it is
                    path.unlink()

    def _sidecar(self, outcome: VideoOutcome, array: np.ndarray) -> dict[str, Any]:
        record = outcome.record
        protocol = self.engine.protocol.as_dict()
        if self.views.get("stride") is not None:  # sliding windows, as many as the video holds
            protocol.update(sampling="windows", num_clips=len(record.clips), stride=self.views["stride"])
        try:
            stat = os.stat(outcome.item.path)
            source = {"path": record.path, "size": stat.st_size, "mtime": stat.st_mtime}
        except OSError:
            source = {"path": record.path}
        return {
            "model": self.engine.model_name,
            "checkpoint_sha256": self.engine.model.checkpoint_sha256,
            "protocol": protocol,
            "views": self.views,
            "shape": list(array.shape),
            "dtype": self.dtype.name,
            "pooling": "mean over each clip's crops" if self.per_clip else "mean over all views",
            # The columns of <name>.scores.npy (softmax per view, averaged: classify's probabilities).
            "labels": list(self.engine.labels) if self.with_scores else None,
            "video": record.video,
            "warnings": record.warnings,
            "clips": [{"start": c.start, "end": c.end, "frames": c.frames} for c in record.clips],
            "source": source,
        }

    def close(self, complete: bool = True) -> None:
        self.index.close(complete)

    def __enter__(self) -> "FeatureWriter":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(complete=exc_type is None)
