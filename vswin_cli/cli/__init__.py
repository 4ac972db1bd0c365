"""The `vswin` command line: each command lives in its own module and only parses and prints.

    vswin classify clip.mp4
    vswin classify videos/ -o labels.csv
    vswin extract-features videos/ -o feats/
    vswin models
    vswin download swin-t-k400
    vswin probe clip.mp4
    vswin convert swin_tiny_patch244_window877_kinetics400_1k.pth swin-t.safetensors
"""

from __future__ import annotations

import ast
import inspect
import signal
import sys
import textwrap
from typing import Callable

import typer

from ..errors import VswinError
from . import _output

app = typer.Typer(
    name="vswin",
    help="Classify videos and extract features with the Video Swin Transformer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _help(command: Callable[..., object]) -> str | None:
    """A command's --help text: its docstring, which ``python -OO`` strips (then read from its source)."""
    text = inspect.getdoc(command)
    if text is None:
        try:
            text = ast.get_docstring(ast.parse(textwrap.dedent(inspect.getsource(command))).body[0])  # type: ignore[arg-type]
        except (OSError, TypeError, SyntaxError, IndexError):
            return None
    return text


def _register() -> None:
    # Imported here so that each command module stays independent of the others.
    from . import classify, convert, download, extract_features, models, probe

    for name, command in (("classify", classify.classify), ("extract-features", extract_features.extract_features),
                          ("models", models.models), ("download", download.download), ("probe", probe.probe),
                          ("convert", convert.convert)):
        app.command(name, help=_help(command))(command)


_register()


INTERRUPTED = (
    "interrupted; the videos finished so far are kept (with -o, in the output file): "
    "run the same command with --resume to do the rest"
)
# What Ctrl-C leaves, for the commands where --resume means nothing.
_INTERRUPTED_OTHERS = {
    "download": "interrupted; what arrived is kept and the next download of the same model continues from it",
    "convert": "interrupted; nothing was written",
}


def interrupted_message(argv: list[str]) -> str:
    """The line for Ctrl-C: what is kept depends on the command (the first word not an option)."""
    command = next((word for word in argv if not word.startswith("-")), "")
    if command in ("classify", "extract-features"):
        return INTERRUPTED
    return _INTERRUPTED_OTHERS.get(command, "interrupted")


def main() -> None:
    """Console-script entry point: user errors become one line on stderr and an exit code."""
    interrupted = False
    exit_code = 128 + signal.SIGINT

    def on_interrupt(signum: int, frame: object) -> None:
        nonlocal interrupted, exit_code
        interrupted = True
        exit_code = 128 + signum
        # Decodes running in other threads would otherwise finish their files before the process can end.
        # (A decoding thread may be importing the module right now: then it has no stop yet.)
        stop_decoding = getattr(sys.modules.get("vswin_cli.video"), "stop_decoding", None)
        if stop_decoding is not None:
            stop_decoding()
        raise KeyboardInterrupt

    _output.fill_closed_streams()
    # Typer turns Ctrl-C into a silent exit 130; the handler lets us say what was kept. SIGTERM
    # (kill, a job scheduler's stop) ends the run the same way: the journal, the locks, the crash
    # markers and the worker processes are put in order, instead of left as they were.
    previous = {number: signal.signal(number, on_interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    messages = _output.guard_stderr()
    results = _output.guard_stdout()
    try:
        try:
            app(prog_name="vswin")
        except _output.StdoutGone as gone:
            _output.silence_stdout()
            sys.exit(gone.exit_code)
        except VswinError as error:
            _output.error_line(str(error))
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            interrupted = True
        except SystemExit:
            if not interrupted:
                raise
        finally:
            sys.stdout = results
            for number, handler in previous.items():
                signal.signal(number, handler)
        if interrupted:
            _output.error_line(interrupted_message(sys.argv[1:]))
            sys.exit(exit_code)
    finally:
        sys.stderr = messages
