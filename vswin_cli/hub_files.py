"""One file from the Hugging Face Hub: huggingface_hub's download, verified against weights.toml or the
Hub's own ETag, with the Hub's answers, broken connections and cache failures told in one line.

    $HF_HUB_CACHE (default $HF_HOME/hub)      Hub files, huggingface_hub's own layout
    $HF_HOME/vswin/verified/hub/<blob>.json   the verification record of a Hub blob
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .cache_problems import (
    _cache_error,
    _cannot_write,
    _first_line,
    _in_the_way,
    _in_unusable_cache,
    _read_only_message,
    _warn,
    _writing,
    not_cached_message,
)
from .download_settings import hub_cache_dir, hub_endpoint, is_offline, vswin_cache_dir
from .errors import VswinError
from .hidden_warnings import hidden_warnings
from .registry import weights_toml_path
from .verification import _HEX40, _HEX64, _Expected, _fast_ok, _or_recorded, _read_record, _try_record, file_sha256


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
    _in_the_way(name, pointer, hub_cache_dir())
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
        with _hub_quiet():
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
            raise _cache_error(_read_only_message(f"cannot download {name} ({where})", hub_cache_dir(), error)) from None
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


class _HubQuiet:
    """huggingface_hub's log muted and its "Not enough free disk space" warning hidden while any of
    vswin's Hub downloads runs, in any thread: its retry messages ("Error while downloading", "Trying to
    resume download...") and that multi-line warning would precede vswin's one line. HF_HUB_VERBOSITY,
    set to debug a download, keeps both.

    The log level is process-wide, so downloads in several threads share it: the first in mutes, the
    last out restores (saving and restoring per call, overlapping calls would restore each other's
    muted level and leave it for good).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._saved_level = logging.NOTSET

    @contextmanager
    def __call__(self) -> Iterator[None]:
        if os.environ.get("HF_HUB_VERBOSITY"):
            yield
            return
        logger = logging.getLogger("huggingface_hub")
        with self._lock:
            if self._active == 0:
                self._saved_level = logger.level
                logger.setLevel(logging.CRITICAL + 1)
            self._active += 1
        try:
            with hidden_warnings("Not enough free disk space", module=r"huggingface_hub(\.|$)"):
                yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    logger.setLevel(self._saved_level)


_hub_quiet = _HubQuiet()
