"""Exception groups from task groups, turned back into the one error a caller expects."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def leaves(error: BaseException) -> Iterator[BaseException]:
    """Every error inside `error`, nested groups opened, in order."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


def sole_error(error: BaseException) -> BaseException:
    """The one real error inside nested groups, or `error` itself when there are several (or none)."""
    found = list(leaves(error))
    return found[0] if len(found) == 1 else error


@contextmanager
def unwrapped_groups() -> Iterator[None]:
    """Let a task group's sole error out as itself (keeping its own cause and traceback)."""
    try:
        yield
    except BaseExceptionGroup as group:
        error = sole_error(group)
        if error is group:
            raise
        raise error from error.__cause__
