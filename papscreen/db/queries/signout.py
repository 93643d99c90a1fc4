"""Signing a slide out: the screener's interpretation, then, for an abnormal slide, the pathologist's.

A cytotechnologist screens: NILM or unsatisfactory is signed out at once; any other interpretation waits for a
pathologist, who confirms or changes it and signs the slide out. A pathologist may also screen and sign out in
one step. Each step is a :class:`~papscreen.db.schema.Signout` row (the report's trail) and an audit event, and
the slide's row carries where its report stands, for the worklist. With ``require_gallery_viewed`` a person signs
only after the dashboard has shown them the whole gallery of the slide's current analysis
(:func:`mark_gallery_viewed`), so nobody signs a slide after looking at one of its cells.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from papscreen.bethesda import REPORT_INTERPRETATIONS, SIGNOUT_BY_SCREENER
from papscreen.db.queries.analyses import current_analysis
from papscreen.db.queries.audit import record_event
from papscreen.db.queries.slides import require_slide
from papscreen.db.schema import AuditEvent, Signout, SignoutStatus, SlideStatus, utcnow
from papscreen.errors import SignoutError

__all__ = [
    "GALLERY_VIEWED",
    "Role",
    "SignoutRow",
    "gallery_viewed_by",
    "mark_gallery_viewed",
    "sign_out",
    "signouts_of",
]

GALLERY_VIEWED = "slide.gallery_viewed"


class Role(enum.StrEnum):
    """What a person does in the lab, and so what the dashboard lets them do."""

    CYTOTECHNOLOGIST = "cytotechnologist"
    PATHOLOGIST = "pathologist"
    ADMIN = "admin"


@dataclass(frozen=True)
class SignoutRow:
    """One signed step, as the slide page and the report show it."""

    step: str
    interpretation: str
    comment: str | None
    signed_by: str
    role: str
    signed_at: datetime
    analysis_id: int | None


def mark_gallery_viewed(session: Session, slide_id: int, *, user: str) -> bool:
    """Record that ``user`` was shown the whole gallery of the slide's current analysis (once); True if new."""
    analysis = current_analysis(session, slide_id)
    if analysis is None or gallery_viewed_by(session, slide_id, user=user):
        return False
    record_event(session, GALLERY_VIEWED, "slide", slide_id, actor=user, details={"analysis_id": analysis.id})
    return True


def gallery_viewed_by(session: Session, slide_id: int, *, user: str) -> bool:
    """Whether ``user`` has been shown the whole gallery of the slide's current analysis."""
    analysis = current_analysis(session, slide_id)
    if analysis is None:
        return False
    events = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == GALLERY_VIEWED,
            AuditEvent.entity_type == "slide",
            AuditEvent.entity_id == str(slide_id),
            AuditEvent.actor == user,
        )
    ).all()
    return any((e.details or {}).get("analysis_id") == analysis.id for e in events)


def sign_out(
    session: Session,
    slide_id: int,
    *,
    interpretation: str,
    user: str,
    role: Role | str,
    comment: str | None = None,
    require_gallery_viewed: bool = True,
) -> SignoutRow:
    """Sign the slide's next step; returns it. The slide is signed out, or waits for a pathologist.

    Raises:
        LookupError: no slide has this id.
        SignoutError: the interpretation is not one a lab reports, the slide has no result, it is signed out
            already, it waits for a pathologist and ``role`` is not one, the role may not sign at all, or the
            gallery has not been viewed (with ``require_gallery_viewed``).
    """
    role = Role(role)
    if interpretation not in REPORT_INTERPRETATIONS:
        raise SignoutError(
            f"{interpretation!r} is not an interpretation: use one of {', '.join(REPORT_INTERPRETATIONS)}"
        )
    if role is Role.ADMIN:
        raise SignoutError("an admin account does not sign out slides: sign in as a cytotechnologist or pathologist")
    slide = require_slide(session, slide_id)
    analysis = current_analysis(session, slide_id)
    if slide.status != SlideStatus.DONE or analysis is None:
        raise SignoutError(f"slide #{slide_id} has no result to sign out (status {slide.status.value})")
    if slide.signout_status == SignoutStatus.SIGNED_OUT:
        raise SignoutError(
            f"slide #{slide_id} was signed out by {slide.signed_out_by} at {slide.signed_out_at:%Y-%m-%d %H:%M} UTC"
        )
    awaiting = slide.signout_status == SignoutStatus.AWAITING_PATHOLOGIST
    if awaiting and role is not Role.PATHOLOGIST:
        raise SignoutError(f"slide #{slide_id} waits for a pathologist's sign-out")
    if require_gallery_viewed and not gallery_viewed_by(session, slide_id, user=user):
        raise SignoutError("look through the whole gallery of the slide's most suspicious cells before signing")
    final = role is Role.PATHOLOGIST or interpretation in SIGNOUT_BY_SCREENER
    now = utcnow()
    step = Signout(
        slide_id=slide_id,
        analysis_id=analysis.id,
        step="final" if final else "screening",
        interpretation=interpretation,
        comment=(comment or "").strip() or None,
        signed_by=user,
        role=role.value,
        signed_at=now,
    )
    session.add(step)
    slide.interpretation = interpretation
    if final:
        slide.signout_status = SignoutStatus.SIGNED_OUT.value
        slide.signed_out_by, slide.signed_out_at = user, now
    else:
        slide.signout_status = SignoutStatus.AWAITING_PATHOLOGIST.value
    record_event(
        session,
        "slide.signed_out" if final else "slide.screened",
        "slide",
        slide_id,
        actor=user,
        details={
            "interpretation": interpretation,
            "role": role.value,
            "analysis_id": analysis.id,
            "comment": step.comment,
        },
    )
    session.flush()
    return _row(step)


def signouts_of(session: Session, slide_id: int) -> list[SignoutRow]:
    """The slide's signed steps, oldest first."""
    steps = session.scalars(select(Signout).where(Signout.slide_id == slide_id).order_by(Signout.signed_at, Signout.id))
    return [_row(s) for s in steps]


def _row(step: Signout) -> SignoutRow:
    return SignoutRow(
        step=step.step,
        interpretation=step.interpretation,
        comment=step.comment,
        signed_by=step.signed_by,
        role=step.role,
        signed_at=step.signed_at,
        analysis_id=step.analysis_id,
    )
