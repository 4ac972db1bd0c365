"""Where the CLI writes: results to stdout, messages and progress to stderr."""

from __future__ import annotations

import os
import sys

from rich.console import Console


def _no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


def stdout_console() -> Console:
    """Results: plain text when stdout is not a terminal or NO_COLOR is set."""
    return Console(file=sys.stdout, no_color=_no_color(), soft_wrap=False, highlight=False)


def stderr_console() -> Console:
    """Messages and progress."""
    return Console(file=sys.stderr, no_color=_no_color(), highlight=False)


def error_line(message: str) -> None:
    """One line, no traceback: `error: <what happened and what to do>`."""
    first = " ".join(str(message).split()) or "unknown error"
    print(f"error: {first}", file=sys.stderr, flush=True)


def warning_line(message: str) -> None:
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
