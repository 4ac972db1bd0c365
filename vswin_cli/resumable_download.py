"""One release URL downloaded into a partial file until it is whole, resuming what a broken connection left.

    NAME.incomplete         a partial download, resumed with an HTTP Range request
    NAME.incomplete.json    the ETag (or Last-Modified) of the response it came from:
                            sent as If-Range, so that a changed file starts over
"""

from __future__ import annotations

import http.client
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import __version__
from .cache_problems import _cannot_write
from .download_settings import _timeout
from .registry import weights_toml_path
from .verification import _write_json

# One network read at most: what arrived before a stall or a Ctrl-C is on disk, not in a lost buffer.
_NETWORK_READ = 1 << 16
# Attempts in a row that leave the partial file no larger than before: then the download gives up.
_FRUITLESS_ATTEMPTS = 3


class _Unavailable(Exception):
    """A source could not deliver the file (network, HTTP status); the next source may."""


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
