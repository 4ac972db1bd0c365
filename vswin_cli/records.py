"""One video's result, as every output format carries it (see DESIGN.md, "Output").

A record is plain data: the engine fills it, the writers in ``formats.py`` and ``terminal.py`` turn
it into a table, JSON, JSONL or CSV. ``to_dict`` keeps the field order of the design so that files
read the same way everywhere; ``from_dict`` reads a record back (resume journals, tests, users'
scripts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import numpy as np

Status = Literal["ok", "error"]


@dataclass(frozen=True)
class Prediction:
    """One class of the top-k: 1-based ``rank``, class ``index`` into the label set, softmax ``score``."""

    rank: int
    index: int
    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "index": self.index, "label": self.label, "score": self.score}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        return cls(
            rank=int(data["rank"]),
            index=int(data["index"]),
            label=str(data["label"]),
            score=float(data["score"]),
        )


@dataclass(frozen=True)
class ClipResult:
    """One clip or sliding window: its time span in seconds, the 0-based frames it used, its top-k."""

    start: float
    end: float
    frames: list[int] = field(default_factory=list)
    predictions: list[Prediction] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "frames": list(self.frames),
            "predictions": [p.to_dict() for p in self.predictions],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClipResult:
        return cls(
            start=float(data["start"]),
            end=float(data["end"]),
            frames=[int(i) for i in data.get("frames") or []],
            predictions=[Prediction.from_dict(p) for p in data.get("predictions") or []],
        )


@dataclass
class VideoRecord:
    """The result for one input video (mutable: the engine fills it in as the video goes).

    ``video`` is what the decoder saw (frames, fps, duration, width, height, rotation) and
    ``views`` the run's sampling settings (clips, crops, clip_len, frame_interval, ...): both are
    plain dicts so that every engine writes the same JSON. ``views`` must be the run-level
    settings, the same for every video of a run, because ``--resume`` compares it.
    """

    path: str
    status: Status
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    model: str = ""
    video: dict[str, Any] | None = None
    views: dict[str, Any] | None = None
    predictions: list[Prediction] = field(default_factory=list)
    clips: list[ClipResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def failure(
        cls,
        path: str,
        error: str,
        *,
        model: str = "",
        views: dict[str, Any] | None = None,
        video: dict[str, Any] | None = None,
        warnings: Sequence[str] = (),
    ) -> VideoRecord:
        """The record of a video that could not be classified, with its one-line reason."""
        return cls(
            path=path,
            status="error",
            error=" ".join(str(error).split()) or "unknown error",
            warnings=list(warnings),
            model=model,
            video=video,
            views=views,
        )

    def to_dict(self) -> dict[str, Any]:
        # Field order is the one of DESIGN.md; JSON, JSONL and the journals all use it.
        return {
            "path": self.path,
            "status": self.status,
            "error": self.error,
            "warnings": list(self.warnings),
            "model": self.model,
            "video": None if self.video is None else dict(self.video),
            "views": None if self.views is None else dict(self.views),
            "predictions": [p.to_dict() for p in self.predictions],
            "clips": [c.to_dict() for c in self.clips],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VideoRecord:
        """Read a record back; raises KeyError/TypeError/ValueError when ``data`` is not one."""
        status = data["status"]
        if status not in ("ok", "error"):
            raise ValueError(f"unknown status {status!r}")
        video = data.get("video")
        views = data.get("views")
        return cls(
            path=str(data["path"]),
            status=status,
            error=None if data.get("error") is None else str(data["error"]),
            warnings=[str(w) for w in data.get("warnings") or []],
            model=str(data.get("model") or ""),
            video=None if video is None else dict(video),
            views=None if views is None else dict(views),
            predictions=[Prediction.from_dict(p) for p in data.get("predictions") or []],
            clips=[ClipResult.from_dict(c) for c in data.get("clips") or []],
        )


def top_k_predictions(
    probs: Sequence[float] | np.ndarray, labels: Sequence[str], k: int
) -> list[Prediction]:
    """The ``k`` highest scores, best first; equal scores are ordered by the lower class index.

    ``k`` larger than the number of classes gives all of them; ``k <= 0`` gives none.
    """
    scores = np.asarray(probs, dtype=np.float64).reshape(-1)
    if len(labels) != scores.size:
        raise ValueError(f"{scores.size} scores but {len(labels)} labels")
    if k <= 0:
        return []
    # A stable sort of the negated scores keeps lower indices first among ties.
    order = np.argsort(-scores, kind="stable")[:k]
    return [
        Prediction(rank=rank, index=int(i), label=labels[int(i)], score=float(scores[i]))
        for rank, i in enumerate(order, start=1)
    ]
