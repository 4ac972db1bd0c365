"""Other libraries' warnings hidden while vswin works, safely across threads (``hidden_warnings``).

``warnings.catch_warnings`` saves and restores the whole process's filter list: two threads that
interleave it leave one's "ignore" behind for good, and meanwhile every thread's warnings follow
the swapped list. Here each message gets one narrow "ignore" filter, added by the first call that
needs it and removed, by identity, when the last such call ends: filters that others add meanwhile
stay, and no call waits for another.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

_lock = threading.Lock()
# (message, module) -> [calls inside, the filter entry vswin added (None: an equal one was there), the list it went into]
_in_use: dict[tuple[str, str], list[Any]] = {}


@contextmanager
def hidden_warnings(*messages: str, module: str = "") -> Iterator[None]:
    """Hide the UserWarnings whose text starts with one of ``messages`` (regexes), from modules
    matching ``module`` (a regex; all when empty), while the block runs."""
    keys = [(message, module) for message in messages]
    with _lock:
        for key in keys:
            if key not in _in_use:
                _in_use[key] = [0, *_add_filter(*key)]
            _in_use[key][0] += 1
    try:
        yield
    finally:
        with _lock:
            for key in keys:
                slot = _in_use[key]
                slot[0] -= 1
                if slot[0] == 0:
                    del _in_use[key]
                    _remove_filter(slot[1], slot[2])


def _add_filter(message: str, module: str) -> tuple[Any, list[Any]]:
    before = list(warnings.filters)
    warnings.filterwarnings("ignore", message=message, category=UserWarning, module=module)
    entry = warnings.filters[0]
    # filterwarnings moves an equal filter to the front rather than add one: that one is the caller's to keep.
    return (None if entry in before else entry), warnings.filters


def _remove_filter(entry: Any, filters_then: list[Any]) -> None:
    if entry is None:
        return
    # The list it went into, and the one in use now (a catch_warnings() elsewhere may have swapped them).
    # An "ignore" leaves nothing in the warning registries to undo.
    for filters in (filters_then, warnings.filters):
        for index, candidate in enumerate(filters):
            if candidate is entry:
                del filters[index]
                break
