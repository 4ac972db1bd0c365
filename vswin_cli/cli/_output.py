"""Where the CLI writes: results to stdout, messages and progress to stderr."""

from __future__ import annotations

import os
import sys

from rich.console import Console

from ..errors import VswinError
from ..terminal import console_width


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


class StdoutGone(VswinError):
    """The reader of stdout went away (``vswin classify videos/ | head -1``): the run ends quietly
    with 141, the status of a process that SIGPIPE ended, as a shell pipeline expects."""

    def __init__(self) -> None:
        super().__init__("", exit_code=128 + 13)


def _write_failed(error: OSError) -> VswinError:
    if isinstance(error, BrokenPipeError):
        return StdoutGone()
    # Not "give -o": probe and models have none.
    return VswinError(f"could not write the results to stdout ({error.strerror or error}); "
                      "send them to a disk with room, or free some", exit_code=1)


class _Guarded:
    """A stream whose write errors end the run in one line (a full disk under ``> out``) or
    quietly (a closed pipe), instead of a traceback or a bare exit 1."""

    def __init__(self, stream: object) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)

    @property
    def buffer(self) -> "_Guarded":
        return _Guarded(self._stream.buffer)  # type: ignore[attr-defined]

    def write(self, data: object) -> int:
        try:
            try:
                return self._stream.write(data)  # type: ignore[attr-defined]
            except UnicodeEncodeError:
                # A table or a list of names on a stream whose encoding lacks a character (LC_ALL=C,
                # an ASCII or Latin-1 terminal): that character escaped, not the run ended.
                # (JSON and CSV escape or keep bytes themselves; text alone gets here.)
                encoding = getattr(self._stream, "encoding", None) or "utf-8"
                escaped = str(data).encode(encoding, "backslashreplace").decode(encoding)
                return self._stream.write(escaped)  # type: ignore[attr-defined]
        except OSError as error:
            raise _write_failed(error) from None

    def flush(self) -> None:
        try:
            self._stream.flush()  # type: ignore[attr-defined]
        except OSError as error:
            raise _write_failed(error) from None


class _Messages:
    """stderr for messages and progress: when it cannot be written (a full disk under ``2>>log``,
    a reader gone from ``2>&1 | head``) the messages are lost, not the run, its results or its
    exit code."""

    def __init__(self, stream: object) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)

    def write(self, data: str) -> int:
        try:
            return self._stream.write(data)  # type: ignore[attr-defined]
        except OSError:
            self._give_up()
            return len(data)

    def flush(self) -> None:
        try:
            self._stream.flush()  # type: ignore[attr-defined]
        except OSError:
            self._give_up()

    def _give_up(self) -> None:
        # The null device takes the descriptor itself too: what is still buffered, what libraries
        # print there and Python's own flush at exit then go nowhere, instead of "Exception ignored".
        null = open(os.devnull, "w")
        try:
            os.dup2(null.fileno(), self._stream.fileno())  # type: ignore[attr-defined]
        except (OSError, ValueError, AttributeError):
            pass
        self._stream = null


def guard_stderr() -> object:
    """Put stderr behind ``_Messages``; returns the stream it wraps, to put back."""
    original = sys.stderr
    sys.stderr = _Messages(original)  # type: ignore[assignment]
    return original


def guard_stdout() -> object:
    """Put stdout behind ``_Guarded``; returns the stream it wraps, to put back."""
    original = sys.stdout
    sys.stdout = _Guarded(original)  # type: ignore[assignment]
    return original


def silence_stdout() -> None:
    """After the reader went away: nothing more reaches the pipe (not even the flush at exit)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.__stdout__.fileno())  # type: ignore[union-attr]
        os.close(null)
    except (OSError, AttributeError, ValueError):
        pass


def require_stdout(remedy: str) -> None:
    """Refuse to make results that a closed stdout would lose (``remedy``: what to do instead)."""
    if stdout_closed:
        raise VswinError(f"stdout is closed, so the results would be lost; {remedy}")


def refuse_dash(output: "os.PathLike[str] | None", remedy: str) -> None:
    """``-o -`` is stdout to many tools; here it would be a file named "-" (``remedy``: what to do)."""
    if output is not None and os.fspath(output) == "-":
        raise VswinError(f"-o - would make a file named '-', not write to stdout; {remedy}")


def _no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


def stdout_console() -> Console:
    """Results: plain text when stdout is not a terminal or NO_COLOR is set."""
    return Console(file=sys.stdout, width=console_width(), no_color=_no_color(), soft_wrap=False, highlight=False)


def stderr_console() -> Console:
    """Messages and progress."""
    return Console(file=sys.stderr, width=console_width(), no_color=_no_color(), highlight=False)


def error_line(message: str) -> None:
    """One line, no traceback: `error: <what happened and what to do>`."""
    first = " ".join(str(message).split()) or "unknown error"
    print(f"error: {first}", file=sys.stderr, flush=True)


def warning_line(message: str) -> None:
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
