"""Files in the intake folder waiting to be tried again after a failure that may pass, with back-off.

A full disk or a share that refuses access for a while must neither quarantine a good scan nor make every pass
spend its time on the same failing file: each failure doubles the wait before the next attempt, up to a cap.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from papscreen.db.queries.slides import NAME_CHARS, PATH_CHARS, storable
from papscreen.db.schema import IntakeRetry, utcnow

__all__ = ["backoff_seconds", "clear_intake_retries", "intake_retries", "path_key", "record_intake_failure"]


def path_key(path: str) -> str:
    """The key of a path: the sha256 of its bytes (a name that is not UTF-8 keeps its own key).

    Examples:
        >>> path_key("/intake/a.png") == path_key("/intake/a.png") != path_key("/intake/b.png")
        True
    """
    return hashlib.sha256(os.fsencode(path)).hexdigest()


def backoff_seconds(failures: int, base_seconds: float, max_seconds: float) -> float:
    """How long to wait after the ``failures``-th failure in a row: ``base``, then doubling, never over ``max``.

    Examples:
        >>> [backoff_seconds(n, 30, 600) for n in (1, 2, 3, 5, 9)]
        [30.0, 60.0, 120.0, 480.0, 600.0]
    """
    return float(min(max_seconds, base_seconds * 2.0 ** min(max(failures - 1, 0), 40)))


def record_intake_failure(
    session: Session,
    path: str,
    name: str,
    error: str,
    *,
    base_seconds: float,
    max_seconds: float,
    now: datetime | None = None,
) -> IntakeRetry:
    """Count one more failure of the file at ``path`` and set when it may be tried again.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> db = memory_database()
        >>> with db.session() as s:
        ...     _ = record_intake_failure(s, "/in/a.png", "a.png", "disk full", base_seconds=30, max_seconds=600)
        ...     again = record_intake_failure(s, "/in/a.png", "a.png", "disk full", base_seconds=30, max_seconds=600)
        ...     again.failures, (again.next_attempt_at - again.first_failed_at).total_seconds() >= 60
        (2, True)
    """
    now = now or utcnow()
    key = path_key(path)
    retry = session.get(IntakeRetry, key)
    if retry is None:
        retry = IntakeRetry(
            path_key=key,
            path=storable(path, PATH_CHARS),
            name=storable(name, NAME_CHARS),
            failures=0,
            first_failed_at=now,
        )
        session.add(retry)
    retry.failures += 1
    retry.last_error = storable(error, 1000)  # type: ignore[assignment]  # str in, str out
    retry.next_attempt_at = now + timedelta(seconds=backoff_seconds(retry.failures, base_seconds, max_seconds))
    session.flush()
    return retry


def intake_retries(session: Session) -> Sequence[IntakeRetry]:
    """Every file waiting to be tried again, the soonest first (for the intake pass and the intake page)."""
    return session.scalars(select(IntakeRetry).order_by(IntakeRetry.next_attempt_at, IntakeRetry.name)).all()


def clear_intake_retries(session: Session, keys: Sequence[str]) -> int:
    """Forget the failures of these files (ingested, quarantined or gone); returns how many were forgotten."""
    if not keys:
        return 0
    result = session.execute(
        delete(IntakeRetry).where(IntakeRetry.path_key.in_(list(keys))).execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
