"""Which failures a task retries: transient ones (the database or a GPU briefly unavailable), never bad input.

Prefect retries a task when its ``retry_condition_fn`` says so; :func:`retry_transient` looks at the exception
the failed run raised. A bad scan (:class:`~papscreen.errors.ImageError`) or a bad setting is final: retrying
cannot fix it, so it is recorded at once instead of costing minutes of back-off.
"""

from __future__ import annotations

from typing import Any

import torch
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from papscreen.config import Settings
from papscreen.errors import PapscreenError

__all__ = ["TransientError", "is_transient", "retry_options", "retry_transient"]


class TransientError(RuntimeError):
    """A failure that may pass by itself (raise it to ask for a retry explicitly)."""


def is_transient(error: BaseException | None) -> bool:
    """True for failures worth retrying: database connection trouble, pool timeouts, CUDA out of memory.

    Examples:
        >>> from sqlalchemy.exc import OperationalError
        >>> is_transient(OperationalError("select 1", {}, Exception("server closed the connection")))
        True
        >>> from papscreen.errors import CorruptImageError
        >>> is_transient(CorruptImageError("a.jpg", "truncated"))
        False
    """
    if error is None:
        return False
    if isinstance(error, TransientError | DisconnectionError | PoolTimeoutError | OperationalError | InterfaceError):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, PapscreenError):
        return False
    if isinstance(error, torch.cuda.OutOfMemoryError | ConnectionError | TimeoutError):
        return True
    cause = error.__cause__ or error.__context__
    return cause is not None and cause is not error and is_transient(cause)


def retry_transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the run failed with a transient error."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception as e:  # noqa: BLE001 - a result that cannot be read is itself a reason to look again
        error = e
    return isinstance(error, BaseException) and is_transient(error)


def retry_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``Task.with_options`` giving the configured retries and back-off."""
    return {
        "retries": settings.orchestration.task_retries,
        "retry_delay_seconds": settings.orchestration.retry_delays() or 0,
        "retry_condition_fn": retry_transient,
    }
