"""Option checks shared by the benchmark scripts: a user's mistake is one line and exit status 2.

Exit status 1 stays a failed criterion (model_speed.py, end_to_end.py). Needs torch alone, so
model_speed.py can use it from a Python with torchvision and nothing else of vswin's.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (0 would fail later, after minutes of work)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text}: must be a positive number")
    return value


def batch_size(text: str) -> int | str:
    """argparse type: ``auto`` or a positive whole number."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: must be auto or a whole number of at least 1") from None


def device(text: str) -> torch.device:
    """argparse type: ``cpu``, ``cuda`` or ``cuda:N``, checked against this machine and this torch
    build (torch only says so later, in an AssertionError)."""
    try:
        chosen = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r}: must be cpu, cuda or cuda:N") from None
    if chosen.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be cpu, cuda or cuda:N")
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: no CUDA GPU is available here (torch {torch.__version__}); use cpu")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    return chosen


def usage_error(message: str) -> int:
    """Print the one line of a user's mistake; the exit status to return (2)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 2
