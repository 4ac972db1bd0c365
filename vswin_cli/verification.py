"""Hashes a download is checked against, and the records that spare later loads from hashing it again.

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

A record (NAME.verified.json beside a release-URL file, $HF_HOME/vswin/verified/hub/<blob>.json for a
Hub blob) holds {"sha256", "size", "mtime_ns", ...} of the verified file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .registry import ModelSpec

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")
_CHUNK = 1 << 20


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


def _or_recorded(expected: _Expected, record: dict[str, Any] | None) -> _Expected:
    """Trust on first download: with no published hash, the one recorded then must match."""
    if not expected.any and record is not None:
        return _Expected(sha256=record["sha256"], origin="recorded at the first download")
    return expected


def file_identity(path: Path) -> tuple[int, ...] | None:
    """What tells one version of a file from another: device, inode, size, modification time (a
    file renamed over ``path`` or written in place changes it); None when it cannot be read."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


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
    _write_text(path, json.dumps(data, indent=1))


def _write_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a full disk leaves the old content, or none): a temporary file
    beside it, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Its own name per process and thread: two threads loading one model never write one temporary file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
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


def _fast_ok(file: Path, record: dict[str, Any] | None) -> bool:
    """Unchanged since it was verified: same size and modification time as the record says."""
    if record is None:
        return False
    try:
        stat = file.stat()
    except OSError:
        return False
    return stat.st_size == record.get("size") and stat.st_mtime_ns == record.get("mtime_ns")
