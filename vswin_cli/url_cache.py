"""Release-URL checkpoints in the cache: downloaded by one process at a time, given their final name
only once verified, and checked again, cheaply, whenever they are used.

    $HF_HOME/vswin/urls/<sha256(url)[:16]>/NAME   release-URL files
        NAME.verified.json                       {"sha256", "size", "mtime_ns", ...} of the verified file
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .cache_problems import _in_the_way, _warn, _writing
from .checkpoint_signatures import _not_a_checkpoint
from .download_settings import hf_home, vswin_cache_dir
from .errors import VswinError
from .registry import ModelSpec, Source, weights_toml_path
from .resumable_download import _discard_partial, _download_resumable, _Unavailable, _validator_path
from .verification import (
    _Expected,
    _fast_ok,
    _or_recorded,
    _read_record,
    _record_path,
    _spec_expected,
    _try_record,
    _write_record,
    file_sha256,
)


def url_cache_path(url: str, filename: str) -> Path:
    """Where a release-URL file lives once verified."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return vswin_cache_dir() / "urls" / key / filename


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


def _url_expected(spec: ModelSpec, record: dict[str, Any] | None) -> _Expected:
    return _or_recorded(_spec_expected(spec), record)


def _verify_url_cached(spec: ModelSpec, source: Source, final: Path) -> tuple[Path, str] | None:
    """A cached release-URL file if it still verifies; a corrupted one is removed (None)."""
    _in_the_way(spec.name, final, hf_home())
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
