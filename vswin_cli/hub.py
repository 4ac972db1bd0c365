"""Checkpoints from a reference: download, cache and verify them before anything loads them.

    from vswin_cli.hub import resolve_checkpoint, download_model, is_cached
    ckpt = resolve_checkpoint("swin-t-k400")          # registry name (weights.toml)
    ckpt = resolve_checkpoint("hf://owner/repo@v1")   # any Hub repository (revision and file optional)
    ckpt = resolve_checkpoint("ckpt/swin.pth")        # a local file, used as it is
    ckpt.path, ckpt.sha256, ckpt.labels, ckpt.protocol

Environment: HF_HOME (cache root), HF_HUB_CACHE (Hub files), HF_ENDPOINT (Hub address),
HF_HUB_OFFLINE=1 (no network at all: Hub and release URLs), VSWIN_WEIGHTS_TOML (another registry),
VSWIN_DOWNLOAD_TIMEOUT (seconds a release-URL read may stall, default 30), HF_HUB_VERBOSITY (set: show
huggingface_hub's own log, muted otherwise). All are read at call time.

Cache layout:
    $HF_HUB_CACHE (default $HF_HOME/hub)          Hub files, huggingface_hub's own layout
    $HF_HOME/vswin/urls/<sha256(url)[:16]>/NAME   release-URL files
        NAME.incomplete                          a partial download, resumed with an HTTP Range request
        NAME.incomplete.json                     the ETag (or Last-Modified) of the response it came from:
                                                 sent as If-Range, so that a changed file starts over
        NAME.verified.json                       {"sha256", "size", "mtime_ns", ...} of the verified file
    $HF_HOME/vswin/verified/hub/<blob>.json       the same record for Hub blobs
    $HF_HOME/vswin/repos/models--OWNER--REPO/<commit>.json   the files a Hub repository holds at a commit

Verification: a download is hashed before it may be loaded; a release-URL file is only renamed
to NAME once its sha256 matched (the full sha256 or the published prefix from weights.toml; with
neither, the sha256 recorded by the first download is trusted from then on; a download that is empty,
text (an HTML login or error page served with HTTP 200), a zip archive without its end, a safetensors
file shorter than its header says, or not of the `size` weights.toml gives, is refused before any of
that, so it is never the one trusted). A Hub file is checked against weights.toml's hash or, failing
that, the Hub's own ETag (sha256 of LFS files, git blob sha1 of small files); a mismatch deletes the
blob and its snapshot link. Later loads compare the file's size and mtime with its record and rehash
it only when they changed or when weights.toml pins a hash the record contradicts (added by an
upgrade after the first download was trusted); a file that no longer matches is deleted and
downloaded again (or reported, offline). Corruption that keeps both size and mtime is not caught by
that fast check: delete the file or run `vswin download` to refetch.

Read-only caches (a shared mount, or a cache copied to an offline machine, which also changes the
mtimes): reading needs no lock and no write; a verification that cannot be recorded still counts
for this run (the file is hashed again next time). What must write (a download, replacing a
corrupted file) fails with one line naming the cache folder.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import logging
import math
import os
import re
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .errors import VswinError
from .protocol import Protocol
from .registry import (
    ModelSpec,
    Source,
    get_spec,
    is_registry_name,
    load_labels,
    parse_label_lines,
    parse_protocol,
    weights_toml_path,
)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")
_CHUNK = 1 << 20
# One network read at most: what arrived before a stall or a Ctrl-C is on disk, not in a lost buffer.
_NETWORK_READ = 1 << 16
# Attempts in a row that leave the partial file no larger than before: then the download gives up.
_FRUITLESS_ATTEMPTS = 3


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


# ----------------------------------------------------------------------------- environment


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hf_home() -> Path:
    value = os.environ.get("HF_HOME")
    if value:
        return Path(os.path.expandvars(value)).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface"


def hub_cache_dir() -> Path:
    value = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(os.path.expandvars(value)).expanduser() if value else hf_home() / "hub"


def vswin_cache_dir() -> Path:
    return hf_home() / "vswin"


def hub_endpoint() -> str:
    value = os.environ.get("HF_ENDPOINT", "").strip()
    if value:
        # Without a scheme the HTTP client fails with a message that reads like "no network".
        if not re.match(r"https?://[^/]", value):
            raise VswinError(
                f"HF_ENDPOINT={value} is not a web address: write it as http://HOST[:PORT] or https://HOST, "
                "or unset it to use huggingface.co"
            )
        return value.rstrip("/")
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def is_offline() -> bool:
    """HF_HUB_OFFLINE as set now (or when huggingface_hub was imported, which then blocks requests anyway)."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return True
    if "huggingface_hub" in sys.modules:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    return False


def _timeout() -> float:
    """Seconds a download may wait for the server (``VSWIN_DOWNLOAD_TIMEOUT``, default 30)."""
    text = os.environ.get("VSWIN_DOWNLOAD_TIMEOUT", "").strip()
    if not text:
        return 30.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    # socket timeouts above about 292 years overflow
    if not (0 < seconds <= 1e9):
        raise VswinError(f"VSWIN_DOWNLOAD_TIMEOUT={text} is not a positive number of seconds (at most 1e9); unset it or set e.g. 60")
    return seconds


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


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
            if not path.exists():
                continue
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


def url_cache_path(url: str, filename: str) -> Path:
    """Where a release-URL file lives once verified."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return vswin_cache_dir() / "urls" / key / filename


def cache_path_for(spec: ModelSpec) -> Path:
    """The cache path of a registry model's preferred source (for messages and listings)."""
    return _source_path(spec, spec.sources[0])


def _source_path(spec: ModelSpec, source: Source) -> Path:
    if source.is_hub:
        return _hub_pointer_path(source.hub_repo, source.hub_revision, source.hub_filename)  # type: ignore[arg-type]
    return url_cache_path(source.url, spec.filename)  # type: ignore[arg-type]


def not_cached_message(name: str, cache_path: Path, reason: str) -> str:
    """The one line a user sees when a model is neither cached nor downloadable here."""
    return (
        f"model '{name}' is not in the cache ({cache_path}) and {reason}; "
        f"run `vswin download {name}` on a machine with a network and copy {hf_home()} over "
        f"(or point HF_HOME at such a copy), or pass a checkpoint file with -m PATH"
    )


# ----------------------------------------------------------------------------- expected hashes


@dataclass(frozen=True)
class _Expected:
    sha256: str | None = None
    sha256_prefix: str | None = None
    git_sha1: str | None = None
    origin: str = ""

    @property
    def any(self) -> bool:
        return bool(self.sha256 or self.sha256_prefix or self.git_sha1)

    def describe(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256[:16]}... ({self.origin})"
        if self.sha256_prefix:
            return f"sha256 starting {self.sha256_prefix} ({self.origin})"
        return f"git blob sha1 {self.git_sha1} ({self.origin})"

    def matches(self, path: Path, actual_sha256: str) -> bool:
        if self.git_sha1:
            return _git_blob_sha1(path) == self.git_sha1
        return self.allows(actual_sha256)

    def allows(self, sha256: str) -> bool:
        """Whether a file with this sha256 can match (a git blob sha1 cannot be told from it: yes)."""
        if self.sha256:
            return sha256 == self.sha256
        if self.sha256_prefix:
            return sha256.startswith(self.sha256_prefix)
        return True


def _spec_expected(spec: ModelSpec | None) -> _Expected:
    if spec is None:
        return _Expected()
    if spec.sha256:
        return _Expected(sha256=spec.sha256, origin="weights.toml")
    if spec.sha256_prefix:
        return _Expected(sha256_prefix=spec.sha256_prefix, origin="weights.toml")
    return _Expected()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _git_blob_sha1(path: Path) -> str:
    # The Hub's ETag of a file kept in git (not LFS): sha1 of "blob <size>\0" + content.
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- verification records


def _record_path(final: Path) -> Path:
    return final.with_name(final.name + ".verified.json")


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not _HEX64.fullmatch(str(record.get("sha256", ""))):
        return None
    return record


def _write_record(path: Path, file: Path, sha256: str, **extra: Any) -> dict[str, Any]:
    stat = file.stat()
    record = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "verified_at": time.time(), **extra}
    _write_json(path, record)
    return record


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` whole or not at all: a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)  # half written (disk full): never leave it behind
        raise


def _try_record(path: Path, file: Path, sha256: str, **extra: Any) -> None:
    """Record the verification of a file already in place, if the cache can be written."""
    try:
        _write_record(path, file, sha256, **extra)
    except OSError:
        pass  # a read-only cache: the verification still holds for this run, the next one hashes again


_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_TOO_LARGE = (errno.EFBIG,)  # `ulimit -f`, a per-file quota, FAT32's 4 GiB
_NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST)  # a file where the cache needs a folder


def _cannot_write(error: BaseException) -> bool:
    """The cache's fault (permissions, a full disk, a file in the way), not a broken connection."""
    return isinstance(error, OSError) and error.errno in (*_READ_ONLY, *_NO_SPACE, *_TOO_LARGE, *_NOT_A_FOLDER)


def _cache_variable(folder: Path) -> str:
    """The setting that moves ``folder``: HF_HUB_CACHE for Hub files when it is set, else HF_HOME."""
    if folder == hub_cache_dir() and (os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")):
        return "HF_HUB_CACHE"
    return "HF_HOME"


def _os_detail(error: OSError) -> str:
    """``Permission denied: /path`` when the error names both, else its first line."""
    return f"{error.strerror}: {error.filename}" if error.strerror and error.filename else _first_line(error)


def _read_only_message(problem: str, folder: Path, error: OSError) -> str:
    """One line for a write into the cache that failed (see _cannot_write and _UNUSABLE_PATH), saying what to do."""
    detail = _os_detail(error)
    variable = _cache_variable(folder)
    if error.errno in _UNUSABLE_PATH:
        return f"{problem}: the cache folder {folder} cannot be made there ({detail}); point {variable} at another folder"
    if error.errno in _NO_SPACE:
        return (
            f"{problem}: no space left in the cache folder {folder} ({detail}); "
            f"free some space or point {variable} at a folder on a disk with room"
        )
    if error.errno in _TOO_LARGE:
        return (
            f"{problem}: the file is too large for the cache folder {folder} ({detail}): a file-size limit "
            f"(`ulimit -f`, a quota) or a file system that cannot hold it (FAT32: 4 GiB at most); "
            f"raise the limit or point {variable} at a folder on another file system"
        )
    if error.errno in _NOT_A_FOLDER:
        return (
            f"{problem}: a file stands where the cache folder {folder} needs a folder ({detail}); "
            f"move that file away or point {variable} at another folder"
        )
    return (
        f"{problem}: the cache folder {folder} is not writable ({detail}); "
        f"make it writable or point {variable} at a writable folder"
    )


@contextmanager
def _writing(problem: str, folder: Path) -> Iterator[None]:
    """Around writes to the cache: a cache that cannot be written becomes one line saying what to do."""
    try:
        yield
    except OSError as error:
        if not (_cannot_write(error) or error.errno in _UNUSABLE_PATH):
            raise
        raise VswinError(_read_only_message(problem, folder, error)) from None


_UNUSABLE_PATH = (errno.ENOENT, errno.ELOOP, errno.ENAMETOOLONG)  # HF_HOME under /proc, or through a loop of links


def _in_unusable_cache(error: BaseException) -> bool:
    """huggingface_hub could not make a folder of the Hub cache (under /proc, say)."""
    if not isinstance(error, OSError) or error.errno not in _UNUSABLE_PATH or not error.filename:
        return False
    cache = os.path.realpath(hub_cache_dir())
    return os.path.realpath(os.fsdecode(error.filename)).startswith(cache)


def _check_cache_folders() -> None:
    """A cache setting that names a file fails here, in one line, not deep inside a download.

    Otherwise huggingface_hub reports it as a failure to reach the Hub (it reads HF_HOME/token first).
    """
    for folder in (hf_home(), hub_cache_dir()):
        variable = _cache_variable(folder)
        try:
            os.stat(folder)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENAMETOOLONG):  # no file can ever be made below it
                raise VswinError(f"{variable}={os.environ.get(variable, folder)}: the cache folder {folder} cannot be "
                                 f"used ({error.strerror}); point {variable} at another folder") from None
        path = folder
        try:
            while not path.exists() and path != path.parent:  # the nearest part that exists
                path = path.parent
            if path.is_dir():
                continue
        except OSError:
            continue  # unreadable: the read or write that needs it will say so
        raise VswinError(
            f"{variable}={os.environ.get(variable, folder)}: the cache folder {folder} is not a folder ({path} is a "
            f"file); move that file away or point {variable} at a folder"
        )


def _fast_ok(file: Path, record: dict[str, Any] | None) -> bool:
    """Unchanged since it was verified: same size and modification time as the record says."""
    if record is None:
        return False
    try:
        stat = file.stat()
    except OSError:
        return False
    return stat.st_size == record.get("size") and stat.st_mtime_ns == record.get("mtime_ns")


_LOCK_NOTICE_S = 2.0  # how long a wait for another downloader goes unannounced


@contextmanager
def _lock(directory: Path, label: str) -> Iterator[None]:
    # One downloader per cache folder at a time, so two processes never append to one partial file.
    directory.mkdir(parents=True, exist_ok=True)
    try:
        from filelock import FileLock, Timeout
    except ImportError:  # pragma: no cover - filelock comes with huggingface_hub
        yield
        return
    lock = FileLock(str(directory / ".lock"))
    try:
        lock.acquire(timeout=_LOCK_NOTICE_S)
    except Timeout:
        # The other download may take minutes: say why nothing seems to happen.
        print(f"waiting for another process that is downloading {label} into {directory}", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


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


class _Unavailable(Exception):
    """A source could not deliver the file (network, HTTP status); the next source may."""


def _cached_source(spec: ModelSpec, source: Source) -> tuple[Path, str] | None:
    path = _source_path(spec, source)
    try:
        if not path.exists():
            return None
    except OSError as error:  # a cache folder of another user, or without the x bit
        folder = hub_cache_dir() if source.is_hub else hf_home()
        variable = _cache_variable(folder)
        raise VswinError(
            f"cannot look for {spec.name} in the cache folder {folder} ({_os_detail(error)}); "
            f"make it readable or point {variable} at another folder"
        ) from None
    if source.is_hub:
        try:
            return _verify_hub_cached(spec.name, path, _spec_expected(spec))
        except _HubMismatch:
            return None  # removed: downloaded again
    return _verify_url_cached(spec, source, path)


def _or_recorded(expected: _Expected, record: dict[str, Any] | None) -> _Expected:
    """Trust on first download: with no published hash, the one recorded then must match."""
    if not expected.any and record is not None:
        return _Expected(sha256=record["sha256"], origin="recorded at the first download")
    return expected


def _url_expected(spec: ModelSpec, record: dict[str, Any] | None) -> _Expected:
    return _or_recorded(_spec_expected(spec), record)


def _verify_url_cached(spec: ModelSpec, source: Source, final: Path) -> tuple[Path, str] | None:
    """A cached release-URL file if it still verifies; a corrupted one is removed (None)."""
    record_path = _record_path(final)
    record = _read_record(record_path)
    if record is not None and not _spec_expected(spec).allows(record["sha256"]):
        # Trusted on first download (or verified for another entry of the same URL) before weights.toml
        # pinned other bytes: the record is no evidence for this entry.
        record = None
    wrong = _url_copy_problem(spec, final)
    if wrong is not None:
        # Its record vouches for bad bytes (an older vswin trusted them): a good download must not be held to it.
        stale = [final, record_path]
    else:
        if _fast_ok(final, record):
            return final, record["sha256"]  # type: ignore[index]
        expected = _url_expected(spec, record)
        actual = file_sha256(final)
        if expected.matches(final, actual):
            origin = expected.origin or "first download (trusted)"
            _try_record(record_path, final, actual, url=source.url, verified_against=origin)
            return final, actual
        wrong = f"is corrupted (sha256 {actual[:16]}..., expected {expected.describe()})"
        stale = [final]  # the record stays: it says what the next download must be
    problem = f"cached copy of {spec.name} at {final} {wrong}"
    with _writing(f"{problem} and cannot be replaced", hf_home()):
        for path in stale:
            path.unlink(missing_ok=True)
    _warn(f"{problem}; removed it")
    return None


def _url_copy_problem(spec: ModelSpec, path: Path) -> str | None:
    """Why a release-URL file cannot be this entry's checkpoint, seen without hashing it; else None.

    Catches copies a trusting first download recorded before these checks existed, too.
    """
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return f"has {size} bytes, not the {spec.size} of its size in {weights_toml_path()}"
    wrong = _not_a_checkpoint(path)
    return None if wrong is None else f"is {wrong}"


def _fetch_url(spec: ModelSpec, source: Source) -> tuple[Path, str]:
    url = source.url
    assert url is not None
    final = url_cache_path(url, spec.filename)
    partial = final.with_name(final.name + ".incomplete")
    with _writing(f"cannot download {spec.name}", hf_home()), _lock(final.parent, spec.name):
        if final.exists():  # another process may have finished it while we waited
            found = _verify_url_cached(spec, source, final)
            if found is not None:
                return found
        record_path = _record_path(final)
        expected = _url_expected(spec, _read_record(record_path))
        _download_resumable(url, partial, spec.size, spec.name)
        wrong = _not_a_checkpoint(partial)
        if wrong is not None:
            # Checked before any hash: with none published, a login page would be trusted for good.
            _discard_partial(partial)
            raise _Unavailable(
                f"{url} sent {wrong} instead of the checkpoint (a proxy or login page, a moved file, or a body "
                "cut short); nothing was kept"
            )
        actual = file_sha256(partial)
        if not expected.matches(partial, actual):
            _discard_partial(partial)
            if expected.origin == "weights.toml":
                cause = f"or the hash in {weights_toml_path()} is wrong"
            else:
                cause = f"(delete {record_path} only if you trust the new file)"
            raise VswinError(
                f"download of {spec.name} from {url} does not match its {expected.describe()}: got sha256 "
                f"{actual[:16]}...; the file was discarded. Try again later; if it keeps happening the file "
                f"at that address has changed {cause}"
            )
        origin = expected.origin or "first download (trusted)"
        # The record goes first: a file under the final name always has one (rename keeps size and mtime).
        _write_record(record_path, partial, actual, url=url, verified_against=origin)
        os.replace(partial, final)
        _validator_path(partial).unlink(missing_ok=True)
        return final, actual


def _download_resumable(url: str, partial: Path, expected_size: int | None, label: str) -> None:
    """Download ``url`` into ``partial``, resuming what is there, until the file is whole.

    Only bytes of a version the server named (ETag or Last-Modified, kept beside the partial file) are
    resumed, and only with If-Range: a file that changed on the server since starts over from byte 0.
    Whole: ``expected_size`` bytes when weights.toml gives the size, else what the server announced
    (without a Content-Length, all it sent before closing). A download that breaks off is retried while
    each attempt leaves the partial file larger than ever before; a few attempts in a row that do not
    (a server that ignores Range and breaks off at the same place, one that announces more bytes than
    it sends) end in _Unavailable, with what arrived kept for the next run.
    """
    timeout = _timeout()
    partial.parent.mkdir(parents=True, exist_ok=True)
    largest = _file_size(partial)
    fruitless = 0
    announced: int | None = None
    while True:
        complete, total = _download_attempt(url, partial, expected_size, label, timeout)
        if complete:
            return
        announced = total or announced  # an attempt that got no answer with a size keeps the last one
        # Bytes received are no progress when they only rewrite what was there (a restart from 0).
        size = _file_size(partial)
        if size > largest:
            largest, fruitless = size, 0
        else:
            fruitless += 1
        if fruitless >= _FRUITLESS_ATTEMPTS:
            if size and _read_validator(partial) is None:
                _discard_partial(partial)  # bytes of no named version are never resumed: no use keeping them
                size = 0
            kept = (f"{size} of {expected_size or announced or '?'} bytes kept in {partial}; running the command "
                    "again resumes it") if size else "nothing was kept"  # (a 416 restart deletes the file)
            raise _Unavailable(f"download from {url} kept breaking off ({kept})")


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _validator_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def _response_validator(headers: Any) -> dict[str, str] | None:
    """What names the version of the file a response carries, for If-Range: a strong ETag, else
    Last-Modified (a weak ETag may not be sent in If-Range)."""
    etag = (headers.get("ETag") or "").strip()
    if etag and not etag.startswith("W/"):
        return {"etag": etag}
    modified = (headers.get("Last-Modified") or "").strip()
    return {"last_modified": modified} if modified else None


def _read_validator(partial: Path) -> dict[str, str] | None:
    try:
        saved = json.loads(_validator_path(partial).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict):
        return None
    for key in ("etag", "last_modified"):
        if isinstance(saved.get(key), str) and saved[key]:
            return {key: saved[key]}
    return None


def _same_version(saved: dict[str, str], headers: Any) -> bool:
    """Whether a 206 answer is of the version the partial file holds. A server that ignores If-Range
    still names the version it sends; one that names none was asked If-Range and answered 206."""
    header = "ETag" if "etag" in saved else "Last-Modified"
    sent = (headers.get(header) or "").strip()
    return not sent or sent == next(iter(saved.values()))


def _discard_partial(partial: Path) -> None:
    # The validator first: a Ctrl-C in between leaves bytes without one, which are never resumed.
    _validator_path(partial).unlink(missing_ok=True)
    partial.unlink(missing_ok=True)


def _start_partial(partial: Path, url: str, validator: dict[str, str] | None) -> None:
    """An empty partial file paired with the validator of the response about to fill it.

    In this order, a Ctrl-C at any point leaves either no validator (the bytes are not resumed) or
    the one of the response the bytes came from.
    """
    _validator_path(partial).unlink(missing_ok=True)
    partial.write_bytes(b"")
    if validator is not None:
        _write_json(_validator_path(partial), {"url": url, **validator})


def _download_attempt(
    url: str, partial: Path, expected_size: int | None, label: str, timeout: float
) -> tuple[bool, int | None]:
    """One request, appended to ``partial`` or written over it: (whether the file is whole now, the size announced)."""
    have = _file_size(partial)
    validator = _read_validator(partial) if have else None
    if have and validator is None:
        # Nothing says which version of the file these bytes are (the server named none, or an older
        # vswin left them): resumed, they could be spliced onto another version and then trusted.
        _discard_partial(partial)
        have = 0
    if expected_size is not None and have == expected_size:
        return True, expected_size
    if expected_size is not None and have > expected_size:
        _discard_partial(partial)  # left by a download of other bytes
        have = 0
    headers = {"User-Agent": f"vswin-cli/{__version__}", "Accept-Encoding": "identity"}
    if have and validator is not None:
        headers["Range"] = f"bytes={have}-"
        # A server whose file changed answers 200 with the whole new file instead of the rest.
        headers["If-Range"] = next(iter(validator.values()))
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and have:
            # Our partial file does not fit the server's file any more: start over.
            _discard_partial(partial)
            return False, None
        raise _Unavailable(f"HTTP {error.code} {error.reason} from {url}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        raise _Unavailable(f"cannot reach {url} ({reason})") from None
    with response:
        if response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if not have or start != have or validator is None or not _same_version(validator, response.headers):
                _discard_partial(partial)  # a range we did not ask for, or of another version: start over
                return False, None
        else:
            have = 0  # the whole file (a server that ignores Range sends it all again)
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if expected_size is not None and total is not None and total != expected_size:
            _discard_partial(partial)
            raise _Unavailable(
                f"{url} announces {total} bytes, but the size in {weights_toml_path()} is {expected_size}; "
                "nothing was kept (try again later; if it keeps happening the file at that address has changed "
                "or that size is wrong)"
            )
        if not have:
            _start_partial(partial, url, _response_validator(response.headers))
        try:
            with open(partial, "ab") as out, _progress(label, total, have) as bar:
                while chunk := response.read1(_NETWORK_READ):
                    out.write(chunk)
                    bar.update(len(chunk))
            ended = True
        except (OSError, http.client.HTTPException) as error:
            if _cannot_write(error):
                raise  # a full disk or a read-only cache: retrying cannot help; what arrived stays for later
            ended = False  # the connection broke mid-file: what arrived stays in the partial file
    size = _file_size(partial)
    whole = expected_size if expected_size is not None else total
    if whole is not None and size > whole:
        _discard_partial(partial)
        promised = f"the size in {weights_toml_path()}" if expected_size is not None else "announced"
        raise _Unavailable(f"{url} sent more than the {whole} bytes {promised}; nothing was kept")
    if whole is not None:
        return size == whole, total
    return ended, total


def is_safetensors_head(head: bytes) -> bool:
    """Whether a file's first bytes open a safetensors file: a plausible 8-byte little-endian
    header length, then the JSON header's ``{``."""
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len < 100_000_000 and head[8:9] == b"{"


def _not_a_checkpoint(path: Path) -> str | None:
    """What a download is when it is plainly no checkpoint (empty, a web page, a JSON error); else None.

    Every layout vswin reads opens with a binary signature, so text markup at the start is an answer
    from something other than the file: an error or login page served with HTTP 200.
    """
    with open(path, "rb") as file:
        head = file.read(256)
        # A zip archive ends with its directory (found within 64 KiB + 22 bytes of the end): without it
        # the body was cut short by something that still closed the connection cleanly.
        file.seek(max(0, path.stat().st_size - (1 << 16) - 22))
        tail = file.read()
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip archive
        return None if b"PK\x05\x06" in tail else "a cut-short zip archive (its end is missing)"
    if head.startswith(b"\x80"):  # torch.save's legacy pickle format
        return None
    if is_safetensors_head(head):  # its header length may start with any byte, '<' too
        return _safetensors_problem(path)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"<", b"{"):
        opening = " ".join(text[:40].decode("utf-8", "replace").split())
        return f"a web page or text (it starts '{opening}')"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file shorter than its header says (cut short though the connection closed cleanly)
    or with a header that is no JSON object; else None."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        header_len = int.from_bytes(file.read(8), "little")
        if size < 8 + header_len:
            return f"a cut-short safetensors file ({size} bytes, its header alone needs {8 + header_len})"
        try:
            header = json.loads(file.read(header_len))
        except (ValueError, RecursionError):
            header = None
    if not isinstance(header, dict):
        return "a damaged safetensors file (its header is no JSON object)"
    # Each tensor's data_offsets are [begin, end) in the data that follows the header.
    offsets = [entry.get("data_offsets") for entry in header.values() if isinstance(entry, dict)]
    ends = [pair[1] for pair in offsets if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], int)]
    needed = 8 + header_len + max(ends, default=0)
    if size < needed:
        return f"a cut-short safetensors file ({size} bytes, its header describes {needed})"
    return None


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (value or "").strip())
    if not match:
        return None, None
    total = match.group(2)
    return int(match.group(1)), (int(total) if total != "*" else None)


@contextmanager
def _progress(label: str, total: int | None, initial: int) -> Iterator[Any]:
    from tqdm import tqdm

    # disable=None: a bar only when stderr is a terminal, never in logs or pipes.
    with tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        file=sys.stderr,
        disable=None,
        leave=False,
    ) as bar:
        yield bar


# ----------------------------------------------------------------------------- Hub files


def _repo_folder(repo_id: str) -> Path:
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def _hub_pointer_path(repo_id: str, commit: str, filename: str) -> Path:
    return _repo_folder(repo_id) / "snapshots" / commit / filename


def _hub_record_path(pointer: Path) -> Path:
    blob = Path(os.path.realpath(pointer))
    key = (
        blob.name
        if (_HEX64.fullmatch(blob.name) or _HEX40.fullmatch(blob.name))
        else hashlib.sha256(str(pointer).encode()).hexdigest()
    )
    return vswin_cache_dir() / "verified" / "hub" / f"{key}.json"


def _hub_expected(pointer: Path, expected: _Expected) -> _Expected:
    if expected.any:
        return expected
    # huggingface_hub names each blob after the Hub's ETag: the sha256 of an LFS file, the git
    # blob sha1 of a small one. Either is the Hub's own statement of the content.
    blob = Path(os.path.realpath(pointer)).name
    if _HEX64.fullmatch(blob):
        return _Expected(sha256=blob, origin="the Hub's ETag")
    if _HEX40.fullmatch(blob):
        return _Expected(git_sha1=blob, origin="the Hub's ETag")
    return _Expected()


class _HubMismatch(Exception):
    """A Hub file that did not match (and was removed); ``wanted`` is what it was checked against."""

    def __init__(self, wanted: _Expected) -> None:
        super().__init__(wanted.describe())
        self.wanted = wanted


def _verify_hub_cached(name: str, pointer: Path, expected: _Expected) -> tuple[Path, str]:
    """The verified file and its sha256; one that does not match is removed and raises _HubMismatch."""
    record_path = _hub_record_path(pointer)
    record = _read_record(record_path)
    if record is not None and not expected.allows(record["sha256"]):
        record = None  # verified before weights.toml pinned other bytes: no evidence for this file
    if _fast_ok(pointer, record):
        return pointer, record["sha256"]  # type: ignore[index]
    wanted = _or_recorded(_hub_expected(pointer, expected), record)
    actual = file_sha256(pointer)
    if wanted.matches(pointer, actual):
        _try_record(record_path, pointer, actual, verified_against=wanted.origin or "first download (trusted)")
        return pointer, actual
    problem = f"the copy of {name} at {pointer} does not match its {wanted.describe()}"
    with _writing(f"{problem} and cannot be replaced", hub_cache_dir()):
        _remove_hub_file(pointer)
    _warn(f"{problem}; removed it")
    raise _HubMismatch(wanted)


def _remove_hub_file(pointer: Path) -> None:
    blob = Path(os.path.realpath(pointer))
    pointer.unlink(missing_ok=True)
    if blob != pointer:
        blob.unlink(missing_ok=True)


def _fetch_hub_file(name: str, repo_id: str, filename: str, revision: str, expected: _Expected) -> tuple[Path, str]:
    """hf_hub_download, then verification; a file that fails it is deleted, downloaded once more, re-checked."""
    for _attempt in range(2):
        pointer = Path(_hf_download(name, repo_id, filename, revision))
        try:
            return _verify_hub_cached(name, pointer, expected)
        except _HubMismatch as mismatch:
            # Kept from the check itself: the blob whose name gave the Hub's ETag is gone now.
            wanted = mismatch.wanted
        if is_offline():
            raise VswinError(not_cached_message(name, pointer, "HF_HUB_OFFLINE is set (the cached copy was corrupted)"))
    if wanted.origin == "weights.toml":
        cause = f"if it keeps happening, the hash in {weights_toml_path()} may be wrong"
    else:
        cause = "if it keeps happening, something between here and the Hub (a proxy) alters the file"
    raise VswinError(
        f"download of {name} (hf://{repo_id}@{revision}/{filename}) does not match its {wanted.describe()}; "
        f"the file was discarded. Try again later; {cause}"
    )


def _remote_entry_not_found() -> type[Exception]:
    """huggingface_hub's "no such file in the repository": ``RemoteEntryNotFoundError`` from 1.0,
    the plain ``EntryNotFoundError`` before (its local twin subclasses it there: catch that first)."""
    from huggingface_hub import errors as hf_errors

    return getattr(hf_errors, "RemoteEntryNotFoundError", hf_errors.EntryNotFoundError)


def _hf_download(name: str, repo_id: str, filename: str, revision: str) -> str:
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    where = f"hf://{repo_id}@{revision}/{filename}"
    offline = is_offline()
    endpoint = None if offline else hub_endpoint()  # offline, HF_ENDPOINT is never used: not checked either
    try:
        with warnings.catch_warnings(), _hub_log_silenced():
            # Its multi-line warning would precede our one line about the full disk.
            warnings.filterwarnings("ignore", message="Not enough free disk space")
            return _resuming_broken_connections(
                lambda: hf_hub_download(
                    repo_id,
                    filename,
                    revision=revision,
                    cache_dir=str(hub_cache_dir()),
                    endpoint=endpoint,
                    local_files_only=offline,
                )
            )
    except hf_errors.LocalEntryNotFoundError as error:
        status = None if offline else _http_status(error)
        if status is not None:  # the Hub answered, with an error: the network is fine, "not cached" would mislead
            raise VswinError(_hub_status_message(where, status)) from None
        pointer = _hub_pointer_path(repo_id, revision, filename)
        if offline:
            reason = "HF_HUB_OFFLINE is set"
        else:
            reason = f"the Hub ({endpoint}) could not deliver {where}: {_first_line(error.__cause__ or error)}"
        raise VswinError(not_cached_message(name, pointer, reason)) from None
    except hf_errors.RevisionNotFoundError:
        raise VswinError(f"{where}: revision '{revision}' not found in {repo_id}") from None
    except _remote_entry_not_found():
        raise VswinError(f"{where}: no file '{filename}' in {repo_id} at {revision}") from None
    except hf_errors.GatedRepoError:  # a RepositoryNotFoundError: caught first
        raise VswinError(_gated_message(where, repo_id, endpoint)) from None
    except hf_errors.RepositoryNotFoundError:
        raise VswinError(f"{where}: repository {repo_id} not found (or private: log in with `hf auth login`)") from None
    except hf_errors.HfHubHTTPError as error:
        status = _http_status(error)
        raise VswinError(_hub_status_message(where, status)) from None
    except Exception as error:  # network errors of the HTTP client, interrupted downloads, disk full
        if _cannot_write(error) or _in_unusable_cache(error):
            raise VswinError(_read_only_message(f"cannot download {name} ({where})", hub_cache_dir(), error)) from None
        if _broken_connection(error):
            raise VswinError(
                f"{where}: the connection to the Hub kept breaking off ({type(error).__name__}: {_first_line(error)}); "
                "running the command again resumes the download"
            ) from None
        raise VswinError(f"{where}: download failed: {type(error).__name__}: {_first_line(error)}") from None


# Downloads of one Hub file in a row, each resuming the last, while the connection keeps breaking.
_HUB_ATTEMPTS = 5


def _resuming_broken_connections(download: Callable[[], str]) -> str:
    """``download()``, called again while the connection breaks mid-file (each call resumes its blob's
    .incomplete file). huggingface_hub 1.0 and later do this themselves; 0.x gives up at the first cut
    in a body (requests' ChunkedEncodingError)."""
    for attempt in range(1, _HUB_ATTEMPTS + 1):
        try:
            return download()
        except Exception as error:
            if attempt == _HUB_ATTEMPTS or not _broken_connection(error):
                raise
            time.sleep(0.5 * attempt)  # a moment for a flaky network to come back
    raise AssertionError("unreachable")


def _broken_connection(error: BaseException) -> bool:
    """A connection that broke or stalled, as the HTTP client huggingface_hub uses reports it."""
    kinds: list[type[BaseException]] = [ConnectionError, http.client.IncompleteRead]
    requests = sys.modules.get("requests")  # huggingface_hub 0.x
    if requests is not None:
        exceptions = requests.exceptions
        kinds += [exceptions.ChunkedEncodingError, exceptions.ConnectionError, exceptions.Timeout]
    for client in ("httpx", "httpx2"):  # huggingface_hub 1.x, 2.x
        module = sys.modules.get(client)
        if module is not None:
            names = ("NetworkError", "RemoteProtocolError", "TimeoutException")
            kinds += [getattr(module, name) for name in names if hasattr(module, name)]
    return isinstance(error, tuple(kinds))


def _http_status(error: BaseException | None) -> int | None:
    """The HTTP status the Hub answered, found along the error's causes (huggingface_hub wraps it)."""
    for _depth in range(8):  # a chain can loop
        if error is None:
            return None
        status = getattr(getattr(error, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
        error = error.__cause__ or error.__context__
    return None


def _hub_busy(status: int | None) -> bool:
    """The Hub is down or busy (a 5xx, 429 or no status): worth trying again later, not a wrong request."""
    return status is None or status >= 500 or status == 429


def _hub_status_message(where: str, status: int | None) -> str:
    if status in (401, 403):
        remedy = "if the repository is private or gated, log in with `hf auth login`"
    elif not _hub_busy(status):
        remedy = "if it keeps happening, check the reference and HF_ENDPOINT"
    else:
        remedy = "try again later"
    return f"{where}: the Hub answered HTTP {status or '?'}; {remedy}"


def _gated_message(where: str, repo_id: str, endpoint: str | None) -> str:
    return (
        f"{where}: repository {repo_id} is gated: request access on its page ({endpoint or hub_endpoint()}/{repo_id}) "
        "and log in with `hf auth login`"
    )


@contextmanager
def _hub_log_silenced() -> Iterator[None]:
    """huggingface_hub's log muted: its retry messages ("Error while downloading", "Trying to resume
    download...") would precede vswin's one line. HF_HUB_VERBOSITY, set to debug a download, keeps it."""
    if os.environ.get("HF_HUB_VERBOSITY"):
        yield
        return
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ----------------------------------------------------------------------------- hf:// references


def parse_hf_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``hf://owner/repo[@revision][/path/in/repo]`` -> (repo_id, revision or None, filename or None)."""
    rest = ref[len("hf://") :]
    parts = rest.split("/", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise VswinError(f"bad Hub reference '{ref}': expected hf://owner/repo[@revision][/file]")
    owner, repo_rev = parts[0], parts[1]
    filename = parts[2] if len(parts) == 3 and parts[2] else None
    repo, _, revision = repo_rev.partition("@")
    if not repo or (repo_rev.endswith("@")):
        raise VswinError(f"bad Hub reference '{ref}': expected hf://owner/repo[@revision][/file]")
    from urllib.parse import unquote

    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:  # a name the Hub cannot hold would otherwise end in "cannot reach ... run vswin download"
        validate_repo_id(f"{owner}/{repo}")
    except HFValidationError as error:
        raise VswinError(f"bad Hub reference '{ref}': {' '.join(str(error).split())}") from None
    return f"{owner}/{repo}", (unquote(revision) if revision else None), filename


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


def _list_repo(ref: str, repo_id: str, revision: str) -> tuple[str | None, list[str] | None]:
    """(commit, files) of the repository at ``revision``: from the Hub, or from the cache when offline.

    The cache answers with the files the Hub listed for that commit when vswin recorded them (see
    _remember_files), so that a labels.txt or config.json that never reached the cache is missed
    offline, not silently left out.
    """
    status = None
    if not is_offline():
        from huggingface_hub import HfApi
        from huggingface_hub import errors as hf_errors

        endpoint = hub_endpoint()  # a bad HF_ENDPOINT is the user's to fix, not "no network" below
        try:
            info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision)
            files = [s.rfilename for s in (info.siblings or [])]
            if info.sha and info.sha != revision:
                _remember_ref(repo_id, revision, info.sha)
            if info.sha and info.siblings is not None:
                _remember_files(repo_id, info.sha, files)
            return info.sha, files
        except hf_errors.RevisionNotFoundError:
            raise VswinError(f"{ref}: revision '{revision}' not found in {repo_id}") from None
        except hf_errors.GatedRepoError:  # a RepositoryNotFoundError: caught first
            raise VswinError(_gated_message(ref, repo_id, endpoint)) from None
        except hf_errors.RepositoryNotFoundError:
            raise VswinError(
                f"{ref}: repository {repo_id} not found (or private: log in with `hf auth login`)"
            ) from None
        except hf_errors.HfHubHTTPError as error:
            status = _http_status(error)
            if not _hub_busy(status):
                raise VswinError(_hub_status_message(ref, status)) from None
            failure = f"the Hub answered HTTP {status}"  # down or busy: the cache may still answer
        except Exception as error:  # no network: fall back to what the cache holds
            failure = f"the Hub ({endpoint}) could not be reached: {_first_line(error)}"
    else:
        failure = "HF_HUB_OFFLINE is set"
    commit = revision if _HEX40.fullmatch(revision) else None
    ref_file = _repo_folder(repo_id) / "refs" / revision
    if commit is None and ref_file.is_file():
        commit = ref_file.read_text(encoding="utf-8").strip()
    snapshot = _repo_folder(repo_id) / "snapshots" / (commit or "-")
    if commit is None or not snapshot.is_dir():
        if status is not None:  # the network works: "run vswin download on a machine with a network" would mislead
            raise VswinError(_hub_status_message(ref, status)) from None
        raise VswinError(not_cached_message(ref, _repo_folder(repo_id), failure))
    listed = _recorded_files(repo_id, commit)
    if listed is not None:
        return commit, listed
    files = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    unseen = [name for name in ("config.json", "labels.txt") if name not in files]
    if unseen:
        # Cached by an older vswin, which recorded no listing: a complete snapshot of a repository
        # without these files looks the same as one whose download of them failed.
        _warn(
            f"{ref}: the cache holds no record of the files in {repo_id} at {commit[:12]} (cached by an older vswin), "
            f"so it is used without {' and '.join(unseen)}, which are not in the cache; if the repository has "
            f"them, run `vswin download {ref}` with a network"
        )
    return commit, files


def _files_record_path(repo_id: str, commit: str) -> Path:
    return vswin_cache_dir() / "repos" / _repo_folder(repo_id).name / f"{commit}.json"


def _remember_files(repo_id: str, commit: str, files: list[str]) -> None:
    # A commit's files never change: recorded once, it tells the offline path what must be cached.
    path = _files_record_path(repo_id, commit)
    if _recorded_files(repo_id, commit) == sorted(files):
        return  # nothing to write (a read-only copy of the cache included)
    with suppress(OSError):  # a read-only cache still works online
        _write_json(path, {"repo": repo_id, "commit": commit, "files": sorted(files)})


def _recorded_files(repo_id: str, commit: str) -> list[str] | None:
    try:
        record = json.loads(_files_record_path(repo_id, commit).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
        return None
    return sorted(files)


def _remember_ref(repo_id: str, revision: str, commit: str) -> None:
    # Files are fetched by commit, so huggingface_hub never learns the branch; the offline path needs it.
    ref_file = _repo_folder(repo_id) / "refs" / revision
    try:
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        if not ref_file.is_file() or ref_file.read_text(encoding="utf-8").strip() != commit:
            ref_file.write_text(commit, encoding="utf-8")
    except OSError:
        pass  # a read-only cache still works online


def _pick_weights_file(ref: str, repo_id: str, revision: str, files: list[str] | None) -> str:
    candidates = sorted(f for f in files or [] if f.lower().endswith(WEIGHT_SUFFIXES))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise VswinError(f"{ref}: no checkpoint file ({', '.join(WEIGHT_SUFFIXES)}) in {repo_id} at {revision}")
    shown = ", ".join(candidates[:6])
    raise VswinError(
        f"{ref}: {len(candidates)} checkpoint files in {repo_id} ({shown}); name one: hf://{repo_id}@{revision}/FILE"
    )


def _read_json_config(ref: str, repo_id: str, revision: str) -> dict[str, Any]:
    path, _ = _fetch_hub_file(ref, repo_id, "config.json", revision, _Expected())
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:  # (nested past Python's recursion limit)
        raise VswinError(f"{ref}: config.json is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise VswinError(f"{ref}: config.json is not a JSON object")
    return config


def _labels_from_config(ref: str, config: dict[str, Any]) -> list[str] | None:
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        by_index = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError):
        raise VswinError(f"{ref}: config.json id2label keys must be class indices") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise VswinError(f"{ref}: config.json id2label must number the classes 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]
