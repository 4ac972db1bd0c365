"""Placeholder until this command is built."""

from ..errors import VswinError


def models() -> None:
    """Not built yet."""
    raise VswinError("this command is not built yet")
