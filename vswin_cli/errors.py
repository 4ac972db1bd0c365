"""The one error type for failures a user caused and can fix."""

from __future__ import annotations


class VswinError(Exception):
    """A user-caused failure: shown as one line on stderr, never a traceback.

    ``exit_code`` is 2 for usage errors (bad option, unknown model, unusable checkpoint,
    no inputs), which is what the CLI returns for this error type.
    """

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
