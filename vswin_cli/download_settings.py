"""Where downloads are cached and how they reach the network, as the environment says at call time.

Environment: HF_HOME (cache root), HF_HUB_CACHE (Hub files), HF_ENDPOINT (Hub address),
HF_HUB_OFFLINE=1 (no network at all: Hub and release URLs), VSWIN_WEIGHTS_TOML (another registry),
VSWIN_DOWNLOAD_TIMEOUT (seconds a release-URL read may stall, default 30), HF_HUB_VERBOSITY (set: show
huggingface_hub's own log, muted otherwise). All are read at call time.
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

from .errors import VswinError


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
