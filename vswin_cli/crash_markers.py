"""Markers that outlive a process that dies while decoding a video, so that the next attempt knows.

A decoder crash (FFmpeg reading out of bounds, the OOM killer) ends the process that decodes, with
no chance to write anything. So each decode leaves a marker while it runs: an empty file named
after the video and the decoding process, removed when decoding ends, however it ends. A marker
whose process no longer exists is an attempt that died decoding that video.

    with crash_markers.decoding(folder, key) as deaths:   # deaths: earlier attempts that died
        ...
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def local_folder() -> Path:
    """Where this machine's runs keep their markers: one folder per user, kept across runs."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"vswin-decoding-{user}"


def key_of(*parts: str) -> str:
    """A file-name-safe key for a video (its absolute path, and whatever else tells attempts apart)."""
    text = "\0".join(parts)
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()


@contextlib.contextmanager
def decoding(folder: Path, key: str) -> Iterator[int]:
    """Hold this process's marker for ``key`` in ``folder``; yield how many earlier attempts died.

    Markers of running processes (the same video decoded elsewhere at the same time) do not count.
    Without a writable folder there are no markers, and no deaths are known: decoding goes on.
    """
    mine = folder / f"{key}.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        earlier = [marker for marker in folder.glob(f"{key}.*") if marker != mine]
        mine.touch()
    except OSError:
        yield 0
        return
    try:
        yield sum(not _running(marker.suffix[1:]) for marker in earlier)
    finally:
        with contextlib.suppress(OSError):
            mine.unlink()


def forget(folder: Path, key: str) -> None:
    """Remove the markers of dead attempts at ``key``: the video is known to decode after all."""
    with contextlib.suppress(OSError):
        for marker in folder.glob(f"{key}.*"):
            if not _running(marker.suffix[1:]):
                marker.unlink()


def _running(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ValueError:
        return True  # not one of our markers: ignore it
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True
