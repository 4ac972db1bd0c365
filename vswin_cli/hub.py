"""Checkpoints from a reference: download, cache and verify them before anything loads them.

    from vswin_cli.hub import resolve_checkpoint, download_model, is_cached
    ckpt = resolve_checkpoint("swin-t-k400")          # registry name (weights.toml)
    ckpt = resolve_checkpoint("hf://owner/repo@v1")   # any Hub repository (revision and file optional)
    ckpt = resolve_checkpoint("ckpt/swin.pth")        # a local file, used as it is
    ckpt.path, ckpt.sha256, ckpt.labels, ckpt.protocol

This module turns a reference into a verified file; the work is done by: download_settings (the
environment: HF_HOME, HF_HUB_OFFLINE, ...), url_cache and resumable_download (release URLs), hub_files
and hub_repos (the Hub), verification (hashes and their records), checkpoint_signatures (a download
that is plainly no checkpoint) and cache_problems (one line for what goes wrong with the cache).

Cache layout:
    $HF_HUB_CACHE (default $HF_HOME/hub)          Hub files, huggingface_hub's own layout
    $HF_HOME/vswin/urls/<sha256(url)[:16]>/NAME   release-URL files
        NAME.incomplete                          a partial download, resumed with an HTTP Range request
        NAME.incomplete.json                     the ETag (or Last-Modified) of the response it came from:
                                                 sent as If-Range, so that a changed file starts over
        NAME.verified.json                       {"sha256", "size", "mtime_ns", ...} of the verified file
    $HF_HOME/vswin/verified/hub/<blob>.json       the same record for Hub blobs
    $HF_HOME/vswin/repos/models--OWNER--REPO/<commit>.json   the files a Hub repository holds at a commit
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache_problems import _cache_error, _cache_variable, _check_cache_folders, _os_detail, not_cached_message
from .checkpoint_signatures import WEIGHT_SUFFIXES
from .download_settings import hf_home, hub_cache_dir, is_offline
from .errors import VswinError
from .hub_files import _fetch_hub_file, _hub_pointer_path, _hub_record_path, _HubMismatch, _verify_hub_cached
from .hub_repos import _labels_from_config, _list_repo, _pick_weights_file, _read_json_config, parse_hf_ref
from .protocol import Protocol
from .registry import (
    ModelSpec,
    Source,
    get_spec,
    is_registry_name,
    load_labels,
    parse_label_lines,
    parse_protocol,
)
from .resumable_download import _Unavailable
from .url_cache import _fetch_url, _url_copy_problem, _verify_url_cached, url_cache_path
from .verification import _Expected, _fast_ok, _read_record, _record_path, _spec_expected


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A verified checkpoint file on disk and what is known about it."""

    path: Path
    name: str
    sha256: str | None
    spec: ModelSpec | None
    labels: list[str] | None
    protocol: Protocol | None
    config: dict[str, Any] | None


# ----------------------------------------------------------------------------- public API


def resolve_checkpoint(ref: str) -> ResolvedCheckpoint:
    """A registry name, ``hf://owner/repo[@revision][/file]`` or a local path -> a verified local file.

    Registry names win over same-named files in the working directory (write ``./NAME`` for those).
    Every failure a user can fix is a one-line VswinError.
    """
    ref = str(ref)
    if ref.startswith("hf://"):
        _check_cache_folders()
        return _resolve_hf(ref)
    if is_registry_name(ref):
        spec = get_spec(ref)
        _check_cache_folders()
        path, sha256 = _fetch_spec(spec)
        return ResolvedCheckpoint(
            path=path,
            name=spec.name,
            sha256=sha256,
            spec=spec,
            labels=load_labels(spec.label_set),
            protocol=spec.protocol,
            config=None,
        )
    path = Path(ref).expanduser()
    if path.is_file():
        return ResolvedCheckpoint(path=path, name=ref, sha256=None, spec=None, labels=None, protocol=None, config=None)
    if path.is_dir():
        raise VswinError(f"{ref} is a folder; pass the checkpoint file inside it with -m")
    if path.exists():
        raise VswinError(f"{ref} is not a regular file (a device, pipe or socket); give a checkpoint file")
    if os.sep in ref or "/" in ref or ref.endswith(WEIGHT_SUFFIXES) or ref.startswith("."):
        raise VswinError(f"no such checkpoint file: {ref}")
    get_spec(ref)  # raises: unknown name, with close matches
    raise AssertionError("unreachable")


def download_model(name: str) -> Path:
    """Fetch (if needed) and verify a registry model or hf:// reference; the verified file's path."""
    return resolve_checkpoint_strict(name).path


def resolve_checkpoint_strict(name: str) -> ResolvedCheckpoint:
    """Like resolve_checkpoint, but only registry names and hf:// references (no local paths)."""
    if not name.startswith("hf://"):
        get_spec(name)  # unknown names fail here, before any download
    return resolve_checkpoint(name)


def is_cached(name: str) -> bool:
    """Whether a registry model has a verified copy in the cache (cheap: no hashing, no network)."""
    return cache_state(name) == "verified"


def cache_state(name: str) -> str:
    """What the cache holds of a registry model, cheaply (no hashing, no network):

    "verified"    unchanged since it was verified: used as it is
    "unverified"  present with the expected size, but changed since verified or never verified (a
                  copied cache gets new mtimes): hashed on first use, and replaced if it does not match
    "missing"     nothing usable: a download is needed
    """
    spec = get_spec(name)
    state = "missing"
    for source in spec.sources:
        path = _source_path(spec, source)
        try:
            if not path.is_file():
                continue  # not there, or a folder in the way (which a download names)
            if not source.is_hub and _url_copy_problem(spec, path) is not None:
                continue  # the wrong size or plainly no checkpoint: replaced on first use
            record = _read_record(_hub_record_path(path) if source.is_hub else _record_path(path))
            if _fast_ok(path, record):
                if _spec_expected(spec).allows(record["sha256"]):  # type: ignore[index]
                    return "verified"
                continue  # verified as other bytes than weights.toml pins now: replaced on first use
            # Hashing a multi-GB file just to list it would be too slow; a size that differs is certain to fail.
            size = record.get("size") if record is not None else spec.size
            if size is None or path.stat().st_size == size:
                state = "unverified"
        except OSError:
            continue  # a cache this user cannot look into holds nothing usable for them
    return state


def cache_path_for(spec: ModelSpec) -> Path:
    """The cache path of a registry model's preferred source (for messages and listings)."""
    return _source_path(spec, spec.sources[0])


def _source_path(spec: ModelSpec, source: Source) -> Path:
    if source.is_hub:
        return _hub_pointer_path(source.hub_repo, source.hub_revision, source.hub_filename)  # type: ignore[arg-type]
    return url_cache_path(source.url, spec.filename)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- registry models


def _fetch_spec(spec: ModelSpec) -> tuple[Path, str]:
    """The verified path and sha256 of a registry model, trying its sources in order."""
    # Anything already cached, from any source, before touching the network.
    reasons: list[str] = []
    for source in spec.sources:
        found = _cached_source(spec, source)
        if found is not None:
            return found
    if is_offline():
        raise VswinError(not_cached_message(spec.name, cache_path_for(spec), "HF_HUB_OFFLINE is set"))
    for source in spec.sources:
        try:
            if source.is_hub:
                return _fetch_hub_file(
                    spec.name,
                    source.hub_repo,
                    source.hub_filename,
                    source.hub_revision,
                    _spec_expected(spec),  # type: ignore[arg-type]
                )
            return _fetch_url(spec, source)
        except _Unavailable as error:
            reasons.append(str(error))
    raise VswinError(not_cached_message(spec.name, cache_path_for(spec), "the download failed: " + "; ".join(reasons)))


def _cached_source(spec: ModelSpec, source: Source) -> tuple[Path, str] | None:
    path = _source_path(spec, source)
    try:
        if not path.exists():
            return None
    except OSError as error:  # a cache folder of another user, or without the x bit
        folder = hub_cache_dir() if source.is_hub else hf_home()
        variable = _cache_variable(folder)
        raise _cache_error(
            f"cannot look for {spec.name} in the cache folder {folder} ({_os_detail(error)}); "
            f"make it readable or point {variable} at another folder"
        ) from None
    if source.is_hub:
        try:
            return _verify_hub_cached(spec.name, path, _spec_expected(spec))
        except _HubMismatch:
            return None  # removed: downloaded again
    return _verify_url_cached(spec, source, path)


# ----------------------------------------------------------------------------- hf:// references


def _resolve_hf(ref: str) -> ResolvedCheckpoint:
    repo_id, revision, filename = parse_hf_ref(ref)
    revision = revision or "main"
    commit, files = _list_repo(ref, repo_id, revision)
    if filename is None:
        filename = _pick_weights_file(ref, repo_id, revision, files)
    elif files is not None and filename not in files:
        shown = ", ".join(sorted(files)[:8]) or "none"
        raise VswinError(f"{ref}: no file '{filename}' in {repo_id} at {revision} (files: {shown})")
    path, sha256 = _fetch_hub_file(ref, repo_id, filename, commit or revision, _Expected())
    labels = None
    config: dict[str, Any] | None = None
    protocol = None
    if files is not None and "config.json" in files:
        config = _read_json_config(ref, repo_id, commit or revision)
    if files is not None and "labels.txt" in files:
        labels_path, _ = _fetch_hub_file(ref, repo_id, "labels.txt", commit or revision, _Expected())
        try:
            labels = parse_label_lines(labels_path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError:
            raise VswinError(f"{ref}: its labels.txt is not UTF-8 text; run its checkpoint file with -m PATH --labels FILE") from None
    if config is not None:
        labels = labels or _labels_from_config(ref, config)
        if isinstance(config.get("protocol"), dict):
            protocol = parse_protocol(config["protocol"], f"{ref} config.json")
    return ResolvedCheckpoint(
        path=path, name=ref, sha256=sha256, spec=None, labels=labels, protocol=protocol, config=config
    )
