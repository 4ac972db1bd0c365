"""Where extract-features puts a video's files (``feature_path``, ``plan_feature_paths``) and
``DIR/index.jsonl``, the journal of what it wrote (``FeatureIndex``). The files themselves are
written by features.py."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .atomic_files import _cut_name
from .errors import VswinError
from .journals import _canonical, _compact_journal, _Journal, _missing_from_here, _path_key
from .records import Status

INDEX_NAME = "index.jsonl"


def _path_hash(path: Path) -> str:
    return hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:10]


# File names are at most 255 bytes on common file systems; the longest name a video gets is its
# scores file, ``<stem>.scores.npy``.
_NAME_MAX = 255
_STEM_MAX = _NAME_MAX - len(".scores.npy")


def feature_path(out_dir: Path, input_path: Path, input_root: Path, disambiguate: bool = False) -> Path:
    """``DIR/<input relative to its root>.npy`` (``a/x.mp4`` -> ``DIR/a/x.mp4.npy``, keeping the
    video's extension so ``x.mp4`` and ``x.avi`` do not collide). A file given directly (root = its
    parent) gives ``DIR/<name>.npy``. With ``disambiguate`` the name gets the first 10 hex digits of
    the sha256 of the input's absolute path: ``x.mp4.<hash>.npy``. Names are kept as they are
    (spaces, non-ASCII); a path that cannot be made relative to its root falls back to its name.
    A name too long for the file system with the suffixes added is cut and gets the hash too, so
    that every file of the video fits within 255 bytes and two cut names never meet."""
    input_path, input_root = Path(input_path), Path(input_root)
    try:
        relative = input_path.relative_to(input_root)
    except ValueError:
        try:
            relative = Path(os.path.abspath(input_path)).relative_to(os.path.abspath(input_root))
        except ValueError:
            relative = Path(input_path.name)
    if ".." in relative.parts or not relative.parts:
        relative = Path(input_path.name)
    tag = f".{_path_hash(input_path)}"
    stem = relative.name + (tag if disambiguate else "")
    if len(os.fsencode(stem)) > _STEM_MAX:
        stem = _cut_name(relative.name, _STEM_MAX - len(tag)) + tag
    return Path(out_dir) / relative.with_name(stem + ".npy")


def plan_feature_paths(
    inputs: Sequence[tuple[Path, Path]], out_dir: Path, taken: Mapping[str, str] | None = None
) -> list[Path]:
    """Output paths for ``(input, root)`` pairs, in order. Inputs whose mirrored paths collide
    (two roots holding ``a/x.mp4``, or names equal up to case) all get the hashed name, so the
    rule does not depend on the order of the inputs. The same file given twice keeps one name.
    ``taken`` maps files already recorded in the folder's index (``str(path).casefold()``) to the
    video they belong to (its index path): another video never gets that name."""
    plain = [feature_path(out_dir, path, root) for path, root in inputs]
    # A video's .npy and its scores file: a video named ``x.mp4.scores`` would otherwise write
    # its features where ``x.mp4``'s scores go.
    owners: dict[str, set[str]] = {}
    for (path, _), out in zip(inputs, plain):
        for name in (out, scores_path(out)):
            owners.setdefault(str(name).casefold(), set()).add(_path_key(path))
    taken = taken or {}

    def clashes(path: Path, out: Path) -> bool:
        keys = [str(name).casefold() for name in (out, scores_path(out))]
        return any(len(owners[key]) > 1 or (key in taken and taken[key] != _path_key(path)) for key in keys)

    return [
        feature_path(out_dir, path, root, disambiguate=True) if clashes(path, out) else out
        for (path, root), out in zip(inputs, plain)
    ]


def scores_path(npy_path: Path) -> Path:
    """``x.mp4.npy`` -> ``x.mp4.scores.npy``."""
    return npy_path.with_name(npy_path.name[: -len(".npy")] + ".scores.npy")


def sidecar_path(npy_path: Path) -> Path:
    """The sidecar JSON of a feature file: ``x.mp4.npy`` -> ``x.mp4.json``."""
    return Path(npy_path).with_suffix(".json")


@dataclass(frozen=True)
class FeatureEntry:
    """One line of ``index.jsonl``: a video, its status and where its files are (relative to DIR)."""

    path: str
    status: Status
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    model: str = ""
    views: dict[str, Any] | None = None
    output: str | None = None
    sidecar: str | None = None
    shape: list[int] | None = None
    dtype: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "error": self.error,
            "warnings": list(self.warnings),
            "model": self.model,
            "views": None if self.views is None else dict(self.views),
            "output": self.output,
            "sidecar": self.sidecar,
            "shape": None if self.shape is None else [int(n) for n in self.shape],
            "dtype": self.dtype,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEntry:
        status = data["status"]
        if status not in ("ok", "error"):
            raise ValueError(f"unknown status {status!r}")
        return cls(
            path=str(data["path"]),
            status=status,
            error=data.get("error"),
            warnings=[str(w) for w in data.get("warnings") or []],
            model=str(data.get("model") or ""),
            views=None if data.get("views") is None else dict(data["views"]),
            output=data.get("output"),
            sidecar=data.get("sidecar"),
            shape=None if data.get("shape") is None else [int(n) for n in data["shape"]],
            dtype=data.get("dtype"),
        )


class FeatureIndex:
    """``DIR/index.jsonl`` of extract-features: one entry per video, appended and fsynced as each
    finishes. ``done(path)``: the newest entry is ok, for the same model and views, and its .npy
    still exists. Duplicates left by retries are compacted (newest wins) at close."""

    def __init__(self, out_dir: Path, resume: bool, model: str, views: Mapping[str, Any] | None) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise VswinError(f"-o {self.out_dir} is a file; extract-features writes into a folder")
        self.path = self.out_dir / INDEX_NAME
        self.model = model
        self._views_canonical = _canonical(None if views is None else dict(views))
        # index.jsonl in a folder of the user's (-o . among the videos) may be theirs: checked first.
        self._journal = _Journal(self.path, keep=resume, check=lambda entry, _: self._entry_from(entry))
        self.missing_from_here = _missing_from_here(self._journal.entries)
        self._newest: dict[str, FeatureEntry] = {}
        self._written: set[str] = set()  # every file an entry names (casefolded), see ``names``
        self._compact = False
        for entry in self._journal.entries:
            self._remember(self._entry_from(entry))
        self._journal.entries = []
        self._closed = False

    def _entry_from(self, data: Mapping[str, Any]) -> FeatureEntry:
        try:
            return FeatureEntry.from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise VswinError(
                f"{self.path} holds a line that is not a vswin index entry ({error}); "
                "give another -o folder or remove the file"
            ) from None

    def _remember(self, entry: FeatureEntry) -> None:
        for name in (entry.output, entry.sidecar):
            if name is not None:
                self._written.add(str(self.out_dir / name).casefold())
        key = _path_key(entry.path)
        self._compact = self._compact or key in self._newest
        self._newest[key] = entry

    def relative(self, path: Path) -> str:
        """``path`` relative to DIR, with forward slashes, as the index stores it."""
        try:
            return Path(os.path.relpath(path, self.out_dir)).as_posix()
        except ValueError:  # another drive on Windows
            return str(path)

    def taken(self) -> dict[str, str]:
        """The .npy files the index gives to videos (``str(DIR / output).casefold()`` -> index path)."""
        return {
            str(self.out_dir / entry.output).casefold(): key
            for key, entry in self._newest.items()
            if entry.status == "ok" and entry.output is not None
        }

    def done(self, path: str | os.PathLike[str]) -> bool:
        entry = self._newest.get(_path_key(path))
        return (
            entry is not None
            and entry.status == "ok"
            and entry.model == self.model
            and _canonical(entry.views) == self._views_canonical
            and entry.output is not None
            and (self.out_dir / entry.output).is_file()
        )

    def names(self, file: Path) -> bool:
        """True when an entry of the index names ``file`` (a .npy or sidecar): vswin wrote it."""
        return str(file).casefold() in self._written

    def output_of(self, path: str | os.PathLike[str]) -> Path | None:
        """The .npy file the newest entry of ``path`` names, or None."""
        entry = self._newest.get(_path_key(path))
        return None if entry is None or entry.output is None else self.out_dir / entry.output

    def add(self, entry: FeatureEntry) -> None:
        self._journal.append(entry.to_dict())
        self._remember(entry)

    def replacing(self, path: str) -> None:
        """Call before a video's files are replaced: an ok entry of an earlier run (other settings)
        stops counting first, so a run stopped halfway never leaves it vouching for new files.
        Without --resume the old index is emptied now, before any file it lists is replaced."""
        self._journal.touch()
        entry = self._newest.get(_path_key(path))
        if entry is not None and entry.status == "ok":
            self.add(FeatureEntry(path=path, status="error", model=self.model, views=entry.views,
                                  error="stopped while its files were being replaced; run again to redo it"))

    def close(self, complete: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        if complete:
            self._journal.touch()
        self._journal.close()
        if self._compact:
            _compact_journal(self.path)

    def __enter__(self) -> FeatureIndex:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(complete=exc_type is None)


def open_feature_index(
    out_dir: Path, *, resume: bool = False, model: str = "", views: Mapping[str, Any] | None = None
) -> FeatureIndex:
    """The index of an extract-features run in ``out_dir`` (read and repaired with ``resume``)."""
    return FeatureIndex(out_dir, resume, model, views)
