"""The slide page's sign-out: the interpretation a lab reports, a comment, the two steps, and the report files.

A cytotechnologist screens and signs: NILM or unsatisfactory is signed out; any other interpretation goes to a
pathologist, who confirms or changes it and signs the slide out (:mod:`papscreen.db.queries.signout` keeps the
rules). Signing needs a named person (a users file) and, with ``dashboard.signout_requires_gallery``, that the
page has shown the signer the slide's whole gallery. The report downloads (PDF, CSV, JSON) are there at every
step: before sign-out they say PRELIMINARY.
"""

from __future__ import annotations

import streamlit as st
from sqlalchemy.orm import Session

from papscreen.bethesda import REPORT_INTERPRETATIONS, SIGNOUT_BY_SCREENER
from papscreen.dashboard.context import DashboardContext
from papscreen.dashboard.writes import store
from papscreen.db import queries
from papscreen.db.queries.report import SlideReport, slide_report
from papscreen.db.queries.slide_view import SlideView
from papscreen.db.schema import SignoutStatus
from papscreen.errors import SignoutError
from papscreen.reports import report_csv, report_json, report_pdf

__all__ = ["gallery_shown_whole", "signout_panel"]


def _viewed_key(view: SlideView, user: str) -> str:
    return f"slide_{view.id}_analysis_{view.analysis_id}_gallery_viewed_by_{user}"


def gallery_shown_whole(ctx: DashboardContext, view: SlideView) -> None:
    """Record (once per analysis and person) that the page has shown the whole gallery to the signed-in user."""
    key = _viewed_key(view, ctx.user)
    if not ctx.signed_in or st.session_state.get(key) or view.analysis_id is None:
        return
    with ctx.database.session() as session:
        queries.mark_gallery_viewed(session, view.id, user=ctx.user)
    st.session_state[key] = True


def _interpretation_key(view: SlideView) -> str:
    return f"slide_{view.id}_interpretation"


def _comment_key(view: SlideView) -> str:
    return f"slide_{view.id}_signout_comment"


def _sign(ctx: DashboardContext, view: SlideView) -> None:
    interpretation = str(st.session_state.get(_interpretation_key(view)))
    comment = st.session_state.get(_comment_key(view)) or None

    def write(session: Session) -> str:
        step = queries.sign_out(
            session,
            view.id,
            interpretation=interpretation,
            comment=comment,
            user=ctx.user,
            role=ctx.role or "",
            require_gallery_viewed=ctx.settings.dashboard.signout_requires_gallery,
        )
        if step.step == "final":
            return f"Slide #{view.id} signed out as {interpretation} by {ctx.user}."
        return f"Slide #{view.id} screened as {interpretation} by {ctx.user}: it now waits for a pathologist."

    store(ctx, write, what="Not signed", expected=(SignoutError, LookupError, ValueError))
    st.session_state.pop(_comment_key(view), None)


def _default_interpretation(view: SlideView) -> str:
    if view.interpretation in REPORT_INTERPRETATIONS:
        return view.interpretation
    if view.adequacy == "unsatisfactory":
        return "unsatisfactory"
    return view.category if view.category in REPORT_INTERPRETATIONS else "NILM"


def _why_not(ctx: DashboardContext, view: SlideView, gallery_viewed: bool) -> str | None:
    """Why this person cannot sign this slide now, in one sentence; None when they can."""
    if not ctx.signed_in or ctx.role is None:
        return "Sign-out needs named users: an admin adds them with `papscreen users add NAME --role ROLE`."
    if ctx.role == queries.Role.ADMIN:
        return "An admin account signs nothing out: sign in as a cytotechnologist or a pathologist."
    if view.signout_status == SignoutStatus.AWAITING_PATHOLOGIST and ctx.role != queries.Role.PATHOLOGIST:
        return "This slide waits for a pathologist's sign-out."
    if ctx.settings.dashboard.signout_requires_gallery and not gallery_viewed:
        return "Look through the whole gallery above first (turn on **Show all**)."
    return None


def signout_panel(ctx: DashboardContext, view: SlideView) -> None:
    """The sign-out section: the trail so far, the form when this person may sign, and the report files."""
    st.subheader("Sign-out and report")
    with ctx.database.session() as session:
        report = slide_report(session, view.id)
        viewed = ctx.signed_in and queries.gallery_viewed_by(session, view.id, user=ctx.user)
    for step in report.signouts:
        comment = f" · {step.comment}" if step.comment else ""
        st.markdown(
            f"**{step.interpretation}** ({step.step}) by **{step.signed_by}**, {step.role}, "
            f"{step.signed_at:%Y-%m-%d %H:%M} UTC{comment}"
        )
    if view.signout_status == SignoutStatus.SIGNED_OUT:
        st.success(f"Signed out as **{view.interpretation}** by {view.signed_out_by}.")
    else:
        _form(ctx, view, viewed)
    _downloads(report)


def _form(ctx: DashboardContext, view: SlideView, viewed: bool) -> None:
    key = _interpretation_key(view)
    if st.session_state.get(key) not in REPORT_INTERPRETATIONS:
        st.session_state[key] = _default_interpretation(view)
    st.selectbox(
        "Interpretation",
        REPORT_INTERPRETATIONS,
        key=key,
        help="What the lab reports for this slide (Bethesda). The machine's category is the starting point.",
    )
    st.text_area("Comment (optional)", key=_comment_key(view), max_chars=2000, height=80)
    chosen = st.session_state[key]
    goes_on = ctx.role != queries.Role.PATHOLOGIST and chosen not in SIGNOUT_BY_SCREENER
    blocked = _why_not(ctx, view, viewed)
    st.button(
        "Sign and send to a pathologist" if goes_on else "Sign out",
        key=f"slide_{view.id}_sign",
        type="primary",
        on_click=_sign,
        args=(ctx, view),
        disabled=blocked is not None,
        help=blocked or "Records your interpretation with your name and the time.",
    )
    if blocked:
        st.caption(blocked)


def _downloads(report: SlideReport) -> None:
    """The report as PDF, CSV and JSON, each made when its button is pressed (not on every draw)."""
    state = "final" if report.final else "preliminary"
    stem = f"papscreen-slide-{report.slide_id}-{state}"
    pdf, table, data = st.columns(3)
    pdf.download_button("Report (PDF)", lambda: report_pdf(report), f"{stem}.pdf", "application/pdf", key="report_pdf")
    table.download_button("Report (CSV)", lambda: report_csv(report), f"{stem}.csv", "text/csv", key="report_csv")
    data.download_button(
        "Report (JSON)", lambda: report_json(report), f"{stem}.json", "application/json", key="report_json"
    )
