"""The append-only audit log: who did what, to which record, when."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from papscreen.db.schema import AuditEvent

__all__ = ["event_vocabulary", "list_events", "record_event"]

SYSTEM_ACTOR = "papscreen"


def record_event(
    session: Session,
    action: str,
    entity_type: str,
    entity_id: int | str | None = None,
    *,
    actor: str = SYSTEM_ACTOR,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction, so the event and the change commit together.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> with memory_database().session() as s:
        ...     record_event(s, "model.promoted", "model_version", 3, actor="alice").action
        'model.promoted'
    """
    event = AuditEvent(
        action=action,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        actor=actor,
        details=details or {},
    )
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session,
    *,
    entity_type: str | None = None,
    entity_id: int | str | None = None,
    actor: str | None = None,
    actions: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> Sequence[AuditEvent]:
    """The newest events first, filtered by record, person, actions and time (``since`` <= at < ``until``)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if entity_type is not None:
        query = query.where(AuditEvent.entity_type == entity_type)
    if entity_id is not None:
        query = query.where(AuditEvent.entity_id == str(entity_id))
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if actions:
        query = query.where(AuditEvent.action.in_(list(actions)))
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    return session.scalars(query).all()


def event_vocabulary(session: Session) -> tuple[list[str], list[str]]:
    """Everyone who has acted, and every action recorded, each sorted: the audit page's filter choices."""
    actors = session.scalars(select(AuditEvent.actor).distinct().order_by(AuditEvent.actor)).all()
    actions = session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)).all()
    return list(actors), list(actions)
