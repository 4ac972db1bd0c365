"""Whether a file can be a checkpoint at all, from its name's suffix and its first and last bytes.

A download that is plainly no checkpoint (empty, an HTML login or error page served with HTTP 200, a zip
archive without its end, a safetensors file shorter than its header says) is refused before it is hashed,
so that it is never the one a first download trusts.
"""

from __future__ import annotations

import json
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


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
