"""Named work locks held through the database, so processes on any host can take turns.

Taking a lock is one INSERT (the primary key refuses a second holder) or, for a lock whose lease ran out or
whose holder is dead, one compare-and-swap UPDATE on the holder and expiry it was seen with: of two processes
taking over the same stale lock, exactly one changes the row. The same statements are atomic on SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from papscreen.db.schema import WorkLock, utcnow

__all__ = ["acquire_lock", "lock_holder", "release_lock", "renew_lock"]


def acquire_lock(
    session: Session,
    name: str,
    *,
    owner: str,
    lease_seconds: float,
    owner_is_dead: Callable[[str], bool] = lambda _owner: False,
) -> bool:
    """Take the lock ``name`` for ``owner`` for ``lease_seconds``; ``False`` while someone else holds it.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> db = memory_database()
        >>> with db.session() as s:
        ...     first = acquire_lock(s, "intake", owner="a", lease_seconds=60)
        ...     second = acquire_lock(s, "intake", owner="b", lease_seconds=60)
        ...     (first, second)
        (True, False)
    """
    now = utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    try:
        with session.begin_nested():
            session.add(WorkLock(name=name, owner=owner, acquired_at=now, expires_at=expires))
        return True
    except IntegrityError:
        pass
    held = session.execute(select(WorkLock.owner, WorkLock.expires_at).where(WorkLock.name == name)).first()
    if held is None:  # released meanwhile: try once more next time rather than loop here
        return False
    holder, until = held
    if holder != owner and until >= now and not owner_is_dead(holder):
        return False
    taken = session.execute(
        update(WorkLock)
        .where(WorkLock.name == name, WorkLock.owner == holder, WorkLock.expires_at == until)
        .values(owner=owner, acquired_at=now, expires_at=expires)
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(taken)


def renew_lock(session: Session, name: str, *, owner: str, lease_seconds: float) -> bool:
    """Extend a lock ``owner`` holds; ``False`` when it is no longer theirs (their lease ran out and was taken)."""
    renewed = session.execute(
        update(WorkLock)
        .where(WorkLock.name == name, WorkLock.owner == owner)
        .values(expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(renewed)


def release_lock(session: Session, name: str, *, owner: str) -> None:
    """Give the lock back (nothing happens when ``owner`` no longer holds it)."""
    session.execute(delete(WorkLock).where(WorkLock.name == name, WorkLock.owner == owner))


def lock_holder(session: Session, name: str) -> str | None:
    """Who holds the lock now (``None``: nobody), for messages."""
    return session.scalar(select(WorkLock.owner).where(WorkLock.name == name))
