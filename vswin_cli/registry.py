"""The registry of pretrained checkpoints: weights.toml -> frozen ModelSpec records.

    from vswin_cli.registry import get_spec, list_specs, load_labels
    spec = get_spec("swin-t-k400")
    spec.protocol.num_clips, spec.sources[0].url, load_labels(spec.label_set)[:3]

weights.toml is found, in this order: the file named by ``VSWIN_WEIGHTS_TOML``; the copy shipped
inside the installed package (``vswin_cli/weights.toml``); the one at the top of a source checkout.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import VswinError
from .protocol import Protocol

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

WEIGHTS_TOML_ENV = "VSWIN_WEIGHTS_TOML"

_HEX = re.compile(r"[0-9a-f]*")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_LAYOUTS = ("official", "torchvision", "mmaction2", "safetensors")
_HUB_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
# Room for the cache's longest companion name (NAME.verified.json.<pid>.tmp) within 255 bytes.
_MAX_FILENAME_BYTES = 200
_MAX_SIZE = 1 << 40  # bytes: a bigger "size" is a typo


@dataclass(frozen=True)
class Arch:
    """Backbone hyper-parameters of a checkpoint."""

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: tuple[int, int, int]
    patch_size: tuple[int, int, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "embed_dim": self.embed_dim,
            "depths": list(self.depths),
            "num_heads": list(self.num_heads),
            "window_size": list(self.window_size),
            "patch_size": list(self.patch_size),
        }

    def short(self) -> str:
        """e.g. ``C96 d2-2-6-2 w8x7x7``: enough to tell the entries apart in a table."""
        depths = "-".join(map(str, self.depths))
        window = "x".join(map(str, self.window_size))
        return f"C{self.embed_dim} d{depths} w{window}"


@dataclass(frozen=True)
class Source:
    """One place the bytes come from: a release URL, or a Hub file pinned to a commit."""

    url: str | None = None
    hub_repo: str | None = None
    hub_filename: str | None = None
    hub_revision: str | None = None

    @property
    def is_hub(self) -> bool:
        return self.hub_repo is not None

    def describe(self) -> str:
        if self.is_hub:
            return f"hf://{self.hub_repo}@{self.hub_revision}/{self.hub_filename}"
        return str(self.url)


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry (a ``[models.<name>]`` table of weights.toml)."""

    name: str
    title: str
    filename: str
    layout: str
    pretrain: str
    arch: Arch
    label_set: str
    num_classes: int
    protocol: Protocol
    sources: tuple[Source, ...]
    sha256: str | None
    sha256_prefix: str | None
    size: int | None
    size_mb_approx: float | None
    top1: float | None
    top5: float | None
    accuracy_protocol: str
    notes: str

    @property
    def dataset(self) -> str:
        return self.label_set

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "filename": self.filename,
            "layout": self.layout,
            "pretrain": self.pretrain,
            "arch": self.arch.as_dict(),
            "label_set": self.label_set,
            "num_classes": self.num_classes,
            "protocol": self.protocol.as_dict(),
            "sources": [s.describe() for s in self.sources],
            "sha256": self.sha256,
            "sha256_prefix": self.sha256_prefix,
            "size": self.size,
            "size_mb_approx": self.size_mb_approx,
            "top1": self.top1,
            "top5": self.top5,
            "accuracy_protocol": self.accuracy_protocol,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Registry:
    path: Path
    default: str
    specs: dict[str, ModelSpec]


def weights_toml_path() -> Path:
    """Where the registry is read from (see the module docstring for the order)."""
    override = os.environ.get(WEIGHTS_TOML_ENV)
    if override:
        try:
            path = Path(override).expanduser()
        except RuntimeError:  # ~user of no such user
            path = Path(override)
        if not path.is_file():
            raise VswinError(
                f"{WEIGHTS_TOML_ENV}={override} does not name a file; unset it or point it at a weights.toml"
            )
        return path
    packaged = resources.files("vswin_cli") / "weights.toml"
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent / "weights.toml"
    if checkout.is_file():
        return checkout
    raise VswinError("weights.toml was not found in the vswin_cli package; reinstall vswin-cli")


def load_registry(path: Path | None = None) -> Registry:
    """Parse and validate a weights.toml (default: the one :func:`weights_toml_path` finds)."""
    path = path if path is not None else weights_toml_path()
    return _load_registry_cached(str(path), _mtime_ns(path))


def list_specs() -> list[ModelSpec]:
    """Every registry entry, in file order."""
    return list(load_registry().specs.values())


def default_model_name() -> str:
    return load_registry().default


def get_spec(name: str) -> ModelSpec:
    """The entry called ``name``; an unknown name is a VswinError suggesting close matches."""
    registry = load_registry()
    spec = registry.specs.get(name)
    if spec is not None:
        return spec
    close = difflib.get_close_matches(name, list(registry.specs), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise VswinError(
        f"unknown model '{name}': {hint}`vswin models` lists the registry names; "
        "-m also takes hf://owner/repo or a checkpoint path"
    )


def is_registry_name(name: str) -> bool:
    return name in load_registry().specs


def load_labels(label_set: str) -> list[str]:
    """Class names of a bundled label set (``vswin_cli/labels/<label_set>.txt``), in class-index order."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", label_set):
        raise VswinError(f"invalid label set name '{label_set}'")
    resource = resources.files("vswin_cli") / "labels" / f"{label_set}.txt"
    if not resource.is_file():
        known = sorted(
            p.name[:-4] for p in (resources.files("vswin_cli") / "labels").iterdir() if p.name.endswith(".txt")
        )
        raise VswinError(f"unknown label set '{label_set}' (bundled: {', '.join(known)})")
    return parse_label_lines(resource.read_text(encoding="utf-8"))


def parse_label_lines(text: str) -> list[str]:
    """Class names, one per line, in index order; trailing blank lines are not classes."""
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


@lru_cache(maxsize=8)
def _load_registry_cached(path_str: str, mtime_ns: int) -> Registry:
    # Keyed by mtime too, so tests (and users) editing the file see the change.
    path = Path(path_str)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise VswinError(f"cannot read {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise VswinError(f"{path} is not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise VswinError(f"{path} is not valid TOML: it is not UTF-8 text") from None
    return _parse_registry(data, path)


def _parse_registry(data: dict[str, Any], path: Path) -> Registry:
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise VswinError(f"{path}: no [models.<name>] tables")
    specs = {name: _parse_spec(name, entry, path) for name, entry in models.items()}
    default = data.get("default", next(iter(specs)))
    if default not in specs:
        raise VswinError(f"{path}: default = '{default}' is not one of its models")
    return Registry(path=path, default=default, specs=specs)


class _Entry:
    """Typed access to one TOML table, with errors that name the file, entry and field."""

    def __init__(self, name: str, table: Any, path: Path) -> None:
        if not isinstance(table, dict):
            raise VswinError(f"{path}: models.{name} must be a table")
        self.name, self.table, self.path = name, table, path

    def fail(self, field: str, why: str) -> VswinError:
        return VswinError(f"{self.path}: models.{self.name}.{field} {why}")

    def get(self, field: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if field not in self.table:
            if default is ...:
                raise self.fail(field, "is missing")
            return default
        value = self.table[field]
        if isinstance(value, bool) or not isinstance(value, kind):
            if not (kind is float and isinstance(value, int) and not isinstance(value, bool)):
                raise self.fail(field, f"has the wrong type ({type(value).__name__})")
            value = float(value)
        return value


def _int_tuple(entry: _Entry, table: dict[str, Any], key: str, length: int | None) -> tuple[int, ...]:
    value = table.get(key)
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        or (length is not None and len(value) != length)
    ):
        size = f"{length} " if length else ""
        raise entry.fail(f"arch.{key}", f"must be a list of {size}positive integers")
    return tuple(value)


def _parse_arch(entry: _Entry) -> Arch:
    table = entry.get("arch", dict)
    embed_dim = table.get("embed_dim")
    if not isinstance(embed_dim, int) or isinstance(embed_dim, bool) or embed_dim <= 0:
        raise entry.fail("arch.embed_dim", "must be a positive integer")
    depths = _int_tuple(entry, table, "depths", None)
    heads = _int_tuple(entry, table, "num_heads", len(depths))
    window = _int_tuple(entry, table, "window_size", 3)
    patch = _int_tuple(entry, table, "patch_size", 3)
    return Arch(embed_dim, depths, heads, window, patch)  # type: ignore[arg-type]


def parse_protocol(table: dict[str, Any], where: str) -> Protocol:
    """A Protocol from a dict of its fields (missing fields keep Protocol's defaults)."""
    fields = {f: getattr(Protocol(), f) for f in Protocol().as_dict()}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise VswinError(f"{where}: unknown protocol field(s) {', '.join(unknown)}")
    values = {**fields, **table}
    if values["sampling"] == "uniform" and "num_clips" not in table:
        values["num_clips"] = 1  # Protocol's default is Kinetics' 4
    if values["sampling"] not in ("clips", "uniform"):
        raise VswinError(f"{where}: protocol.sampling must be 'clips' or 'uniform'")
    if values["num_crops"] not in (1, 3):
        raise VswinError(f"{where}: protocol.num_crops must be 1 or 3")
    for key in ("clip_len", "frame_interval", "num_clips", "short_side", "crop_size"):
        value = values[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise VswinError(f"{where}: protocol.{key} must be a positive integer")
    if values["sampling"] == "uniform" and values["num_clips"] != 1:
        # One sequence spread over the whole video, as the official frame_uniform sampling takes:
        # more clips would be reported in every record and never run.
        raise VswinError(f"{where}: protocol.num_clips must be 1 with sampling 'uniform' (one sequence over the whole video)")
    return Protocol(**values)


def _parse_hex(entry: _Entry, field: str, exact_length: int | None) -> str | None:
    value = entry.get(field, str, "").strip().lower()
    if not value:
        return None
    if not _HEX.fullmatch(value) or (exact_length is not None and len(value) != exact_length):
        raise entry.fail(field, "must be hexadecimal" + (f" ({exact_length} digits)" if exact_length else ""))
    return value


def _has_control_chars(text: str) -> bool:
    """NUL, newlines, escapes: in a path or URL they fail deep inside a download (or mislead a terminal)."""
    return any(unicodedata.category(char) == "Cc" for char in text)


def _parse_sources(entry: _Entry) -> tuple[Source, ...]:
    raw = entry.get("sources", list)
    sources = []
    for index, item in enumerate(raw):
        field = f"sources[{index}]"
        if not isinstance(item, dict):
            raise entry.fail(field, "must be a table")
        if "url" in item:
            url = item["url"]
            if not isinstance(url, str) or not re.fullmatch(r"https?://[^/\s]\S*", url) or _has_control_chars(url):
                raise entry.fail(field, "url must be an http(s) URL, without spaces or control characters")
            sources.append(Source(url=url))
        elif "hub" in item:
            repo, filename, revision = item.get("hub"), item.get("filename"), item.get("revision")
            if not isinstance(repo, str) or not _HUB_REPO.fullmatch(repo):
                raise entry.fail(field, "hub must be 'owner/repo' (letters, digits, '.', '_', '-')")
            if not isinstance(filename, str) or not filename:
                raise entry.fail(field, "needs a filename")
            # It becomes a path under the cache folder: no way out of it, nothing the file system refuses.
            parts = filename.split("/")
            if _has_control_chars(filename) or "\\" in filename or any(part in ("", ".", "..") for part in parts):
                raise entry.fail(field, "filename must be a path in the repository, without '..' or control characters")
            # A registry entry must name exact bytes: a branch could move under it.
            if not isinstance(revision, str) or not _COMMIT.fullmatch(revision):
                raise entry.fail(field, "revision must be a 40-hex commit")
            sources.append(Source(hub_repo=repo, hub_filename=filename, hub_revision=revision))
        else:
            raise entry.fail(field, "needs url = ... or hub = ...")
    if not sources:
        raise entry.fail("sources", "is empty")
    return tuple(sources)


def _parse_spec(name: str, table: Any, path: Path) -> ModelSpec:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise VswinError(f"{path}: model name '{name}' must be lower-case letters, digits, '.', '_' or '-'")
    entry = _Entry(name, table, path)
    layout = entry.get("layout", str)
    if layout not in _LAYOUTS:
        raise entry.fail("layout", f"must be one of {', '.join(_LAYOUTS)}")
    filename = entry.get("filename", str)
    if (
        not filename
        or "/" in filename
        or "\\" in filename
        or filename.startswith(".")
        or _has_control_chars(filename)
        or len(filename.encode()) > _MAX_FILENAME_BYTES
    ):
        limits = f"no folders, no control characters, at most {_MAX_FILENAME_BYTES} bytes"
        raise entry.fail("filename", f"must be a plain file name ({limits})")
    num_classes = entry.get("num_classes", int)
    if num_classes <= 0:
        raise entry.fail("num_classes", "must be positive")
    size = entry.get("size", int, 0)
    if size > _MAX_SIZE:
        raise entry.fail("size", "must be the file's size in bytes (0 when unknown), at most 2**40 (1 TiB)")
    size_mb = entry.get("size_mb_approx", float, 0.0)
    if not size_mb <= _MAX_SIZE / 2**20:  # nan and inf too
        raise entry.fail("size_mb_approx", "must be the size in MiB (0 when unknown), at most 2**20 (1 TiB)")
    top1 = entry.get("top1", float, None)
    top5 = entry.get("top5", float, None)
    return ModelSpec(
        name=name,
        title=entry.get("title", str, name),
        filename=filename,
        layout=layout,
        pretrain=entry.get("pretrain", str, ""),
        arch=_parse_arch(entry),
        label_set=entry.get("label_set", str),
        num_classes=num_classes,
        protocol=parse_protocol(entry.get("protocol", dict), f"{path}: models.{name}"),
        sources=_parse_sources(entry),
        sha256=_parse_hex(entry, "sha256", 64),
        sha256_prefix=_parse_hex(entry, "sha256_prefix", None),
        size=size if size > 0 else None,
        size_mb_approx=size_mb if size_mb > 0 else None,
        top1=top1,
        top5=top5,
        accuracy_protocol=entry.get("accuracy_protocol", str, ""),
        notes=entry.get("notes", str, ""),
    )
