"""Where the CLI writes: results to stdout, messages and progress to stderr."""

from __future__ import annotations

import os
import sys

from rich.console import Console

from ..errors import VswinError


# Set by ``fill_closed_streams`` when vswin started with stdout closed (``>&-``).
stdout_closed = False


def fill_closed_streams() -> None:
    """A stream the shell closed (``2>&-``, ``>&-``) is None in Python; writing to it would end
    the run in a traceback. Messages to a closed stderr are dropped; results that would go to a
    closed stdout are refused by the commands that make them (``stdout_closed``)."""
    global stdout_closed
    # In this order, the null device takes the closed descriptors 1 and 2 themselves: a file
    # opened later (the output) can then never become fd 1 or 2, where libraries print.
    if sys.stdout is None:
        stdout_closed = True
        sys.stdout = open(os.devnull, "w")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")


def require_stdout(remedy: str) -> None:
    """Refuse to make results that a closed stdout would lose (``remedy``: what to do instead)."""
    if stdout_closed:
        raise VswinError(f"stdout is closed, so the results would be lost; {remedy}")


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
