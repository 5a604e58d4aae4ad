"""Refusing to run on a library version our use of its internals was not written for.

Where favdispatch relies on another library's private internals (`base/databases_internals.py`,
`delivery/uvicorn_protocols.py`), a minor upgrade of that library can break it silently. Each such module calls
`require` at import: outside the range it was written and tested for, the process stops with one line saying so.
"""

from __future__ import annotations

import re
from importlib.metadata import version


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def require(distribution: str, at_least: str, below: str, *, module: str) -> None:
    """Stop (SystemExit, one line) unless `at_least <= installed < below`."""
    installed = version(distribution)
    if not _release(at_least) <= _release(installed) < _release(below):
        raise SystemExit(
            f"{module} relies on {distribution}'s internals as of {at_least} up to (not including) {below}, but "
            f"{distribution} {installed} is installed: install the version in requirements.lock "
            f"(`make install`), or check {module} against {installed} and widen its range"
        )
