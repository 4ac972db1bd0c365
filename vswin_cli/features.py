"""Feature files of extract-features: ``.npy`` per video, a sidecar JSON, and ``index.jsonl``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .engine import Engine, VideoOutcome
from .inputs import InputVideo
from .outputs import (
    FeatureEntry, open_feature_index, plan_feature_paths, sidecar_path, user_io, write_json_atomic, write_npy_atomic,
)


def scores_path(npy_path: Path) -> Path:
    """``x.mp4.npy`` -> ``x.mp4.scores.npy``."""
    return npy_path.with_name(npy_path.name[: -len(".npy")] + ".scores.npy")


def feature_files(out_dir: Path, videos: Sequence[InputVideo], with_scores: bool = False) -> list[Path]:
    """Every file a run may write for ``videos`` in ``out_dir``: each .npy, its sidecar and scores."""
    files = []
    for npy in plan_feature_paths([(v.path, v.root) for v in videos], Path(out_dir)):
        files += [npy, sidecar_path(npy)] + ([scores_path(npy)] if with_scores else [])
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
        paths = plan_feature_paths([(v.path, v.root) for v in videos], self.out_dir)
        self._targets = {str(v.path): p for v, p in zip(videos, paths)}
        with user_io(self.out_dir):
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.index = open_feature_index(self.out_dir, resume=resume, model=engine.model_name, views=self.views)

    def done(self, item: InputVideo) -> bool:
        return self.index.done(item.path)

    def add(self, outcome: VideoOutcome) -> bool:
        """Write one video's files; False when the video failed (an error line in the index)."""
        record = outcome.record
        if record.status != "ok" or outcome.features is None:
            self.index.add(FeatureEntry(path=record.path, status="error", error=record.error, warnings=record.warnings,
                                        model=self.engine.model_name, views=self.views))
            return False
        target = self._targets[str(outcome.item.path)]
        array = outcome.clip_features if self.per_clip else outcome.features
        array = np.ascontiguousarray(array, dtype=self.dtype)
        with user_io(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            write_npy_atomic(target, array)
        if self.with_scores:
            scores = outcome.clip_scores if self.per_clip else outcome.scores
            with user_io(scores_path(target)):
                write_npy_atomic(scores_path(target), np.ascontiguousarray(scores, dtype=np.float32))
        sidecar = sidecar_path(target)
        with user_io(sidecar):
            write_json_atomic(sidecar, self._sidecar(outcome, array))
        self.index.add(FeatureEntry(
            path=record.path, status="ok", warnings=record.warnings, model=self.engine.model_name, views=self.views,
            output=self.index.relative(target), sidecar=self.index.relative(sidecar),
            shape=list(array.shape), dtype=self.dtype.name,
        ))
        return True

    def _sidecar(self, outcome: VideoOutcome, array: np.ndarray) -> dict[str, Any]:
        record = outcome.record
        try:
            stat = os.stat(outcome.item.path)
            source = {"path": record.path, "size": stat.st_size, "mtime": stat.st_mtime}
        except OSError:
            source = {"path": record.path}
        return {
            "model": self.engine.model_name,
            "checkpoint_sha256": self.engine.model.checkpoint_sha256,
            "protocol": self.engine.protocol.as_dict(),
            "views": self.views,
            "shape": list(array.shape),
            "dtype": self.dtype.name,
            "pooling": "mean over each clip's crops" if self.per_clip else "mean over all views",
            "labels": "scores file holds softmax class scores" if self.with_scores else None,
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
