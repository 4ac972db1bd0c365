"""Which files a run covers: paths and folders from the command line -> videos, in a stable order.

A file named on the command line is always tried (it gets an error record if it is no video).
Inside folders, a file is taken when its extension is a video one or when its first bytes are a
video container's signature (so `clip` without an extension is found, and `notes.mp4` holding
text is tried and reported). Other files, and sub-folders without ``-r``, are counted as skipped.
Symbolic links are followed; a folder reached twice (link cycles) is listed once.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .errors import VswinError

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .wmv .asf .flv .f4v .mpg .mpeg .mpe .m2v .ts .mts .m2ts .3gp .3g2 .ogv .ogg "
    ".gif .apng .mxf .vob .divx .y4m .h264 .264 .hevc .h265 .265 .ivf .nut .rm .rmvb .dv .mjpeg .mjpg".split()
)


@dataclass(frozen=True)
class InputVideo:
    """One video to process: its path as the user will see it, and the root it was found under."""

    path: Path
    root: Path

    @property
    def relative(self) -> Path:
        """The path below its root (its name, for a file given directly)."""
        try:
            return self.path.relative_to(self.root)
        except ValueError:
            return Path(self.path.name)


@dataclass
class Discovery:
    videos: list[InputVideo] = field(default_factory=list)
    skipped_files: int = 0
    skipped_folders: int = 0  # sub-folders not looked into (no -r)
    unlisted_folders: list[tuple[Path, str]] = field(default_factory=list)  # (folder, why) that could not be listed


# ISO base media files (the MP4 family) whose major brand says they hold still pictures: AVIF
# and HEIF/HEIC photos. FFmpeg opens them as one-frame videos; their sequence brands (avis,
# msf1, hevc) are moving pictures and stay videos.
_STILL_IMAGE_BRANDS = {b"avif": "AVIF", b"heic": "HEIC", b"heix": "HEIC", b"heim": "HEIF", b"heis": "HEIF",
                       b"mif1": "HEIF", b"mif2": "HEIF"}


def still_image_kind(head: bytes) -> str | None:
    """The kind of photo an MP4-family file is by its first bytes (``AVIF``, ``HEIC``...), else None."""
    return _STILL_IMAGE_BRANDS.get(head[8:12]) if head[4:8] == b"ftyp" else None


def looks_like_video(path: Path) -> bool:
    """True when the first bytes are a common video container's signature."""
    head = _regular_file_head(path, 188 * 3 + 1)
    return (
        (head[4:8] == b"ftyp" and still_image_kind(head) is None)  # MP4 / MOV / 3GP
        or head[:4] == b"\x1a\x45\xdf\xa3"  # Matroska / WebM
        or (head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"))
        or head[:4] in (b"GIF8", b"OggS", b"FLV\x01", b"DKIF", b"YUV4", b"nut/")
        or head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")  # MPEG program / elementary stream
        or head[:4] == b"\x30\x26\xb2\x75"  # ASF / WMV
        or (len(head) > 376 and head[0] == head[188] == head[376] == 0x47)  # MPEG-TS: a sync byte every 188
    )


def _regular_file_head(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of a regular file; nothing for anything else. Opened without
    blocking: opening a FIFO that no one writes to waits forever."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, size)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _is_candidate(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS or looks_like_video(path)


def discover(paths: Iterable[str | Path], recursive: bool = False, output_folders: Iterable[str | Path] = ()) -> Discovery:
    """Videos under ``paths``; a path that does not exist is a usage error.

    Folders in ``output_folders`` (the run's own output folder, inside an input folder) do not count as
    skipped folders, and the files in them that are no videos (the run's own outputs) do not count
    as skipped files; their videos are listed as any others.
    """
    found = Discovery()
    seen_files: set[str] = set()
    outputs = {os.path.realpath(folder) for folder in output_folders}
    seen_dirs: set[str] = set()

    def add(path: Path, root: Path) -> None:
        key = os.path.realpath(path)
        if key not in seen_files:
            seen_files.add(key)
            found.videos.append(InputVideo(path, root))

    def entries_of(folder: Path) -> Iterator[os.DirEntry[str]]:
        real = os.path.realpath(folder)
        if real in seen_dirs:
            return iter(())
        seen_dirs.add(real)
        try:
            return iter(sorted(os.scandir(folder), key=lambda e: e.name))
        except OSError as error:
            found.unlisted_folders.append((folder, error.strerror or str(error)))
            return iter(())

    def walk(root: Path) -> None:
        # Depth first in name order, with a stack of folders rather than recursion: a tree may be
        # deeper than Python's recursion limit.
        stack = [(entries_of(root), os.path.realpath(root) in outputs)]
        while stack:
            entries, quiet = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            child = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                inner_quiet = quiet or os.path.realpath(child) in outputs
                if recursive:
                    stack.append((entries_of(child), inner_quiet))
                elif not inner_quiet:
                    found.skipped_folders += 1
            elif _is_candidate(child):
                add(child, root)
            elif not os.access(child, os.R_OK) or not _exists(child):
                # Unreadable files and dangling links are tried, so they get an error record; a file
                # gone since the folder was listed (another run's temporary or journal file) is none.
                if os.path.lexists(child):
                    add(child, root)
            elif not quiet:
                found.skipped_files += 1

    for given in paths:
        path = Path(given)
        try:
            is_folder = path.is_dir()  # whatever its name: a folder called trip.mp4 holds videos too
            there = is_folder or path.exists() or path.is_symlink()
        except OSError:  # cannot even be looked at (a folder without search permission, a name too long): its record says why
            is_folder, there = False, True
        if is_folder:
            walk(path)
        elif there:
            add(path, path.parent)
        else:
            raise VswinError(f"no such file or folder: {path}")
    return found


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False
