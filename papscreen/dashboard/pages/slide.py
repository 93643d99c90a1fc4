"""The slide page: one slide's result, and where a cytotechnologist confirms or corrects its cells.

Top to bottom: the header (category, adequacy, abnormal score, status, who reviewed it, the flow run), then the
overlay beside the review panel, a region view of the scan around the chosen cell (whole slides only: on a
thumbnail a cell is a dot), the gallery of the slide's most suspicious cells across classes, and the cell table.

One cell is "chosen" at a time: from the review panel's select box, a gallery crop's button, the next/previous
buttons (keys J and K), or a row picked in the cell table. Every cell is called by its one id, ``#<cell id>``,
in the picker, under its gallery crop and in the table. The region view centres on it and the review panel
grades it. Each write (a cell's class, the slide marked reviewed) is one transaction through
:mod:`papscreen.db.queries`, recorded under ``ctx.user``, and runs in a widget callback, so the page drawn right
after already shows it. Reads are cached for ``settings.dashboard.cache_ttl_seconds`` and every write clears the
cache.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.dashboard import navigation
from papscreen.dashboard.context import DashboardContext
from papscreen.dashboard.images import (
    REGION_SIZES,
    Picture,
    load_gallery_crop,
    load_overlay,
    region_box,
    region_view,
)
from papscreen.dashboard.signout import gallery_shown_whole, signout_panel
from papscreen.dashboard.writes import show_flash, store
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.queries.slide_view import (
    DEFAULT_CELL_LIMIT,
    CellRow,
    GalleryEntry,
    PickerSlide,
    SlideView,
    cells_in_region,
    slide_view,
    slides_for_picker,
)

__all__ = ["GALLERY_SHOWN", "PICKER_LIMIT", "SHORTCUTS", "render"]

GALLERY_SHOWN = 12
"""Crops shown before "show all": two rows, the cells that decide most slides, without paging through thirty."""

SHORTCUTS = {"accept": "A", "reject": "X", "next": "J", "previous": "K"}
"""Keyboard shortcuts of the review panel (Streamlit reserves C and R): accept the model's class, reject it
(the cell is NILM), next and previous cell, as in the image viewers screeners know."""

GALLERY_COLUMNS = 6
PICKER_LIMIT = 200
REGION_CELL_LIMIT = 2000


# -- keys of this page's widgets (per slide, so opening another slide starts afresh) ----------------------------
def _cell_key(slide_id: int) -> str:
    return f"slide_{slide_id}_review_cell"


def _label_key(slide_id: int, cell_id: int) -> str:
    return f"slide_{slide_id}_cell_{cell_id}_label"


def _table_key(slide_id: int) -> str:
    return f"slide_{slide_id}_cells_table"


def _table_seen_key(slide_id: int) -> str:
    return f"slide_{slide_id}_cells_table_seen"


# -- cached reads ---------------------------------------------------------------------------------------------------
def _read_view(url: str, _database: Database, slide_id: int, cell_limit: int) -> SlideView:
    """The slide as plain data (``url`` keys the cache; the database itself is not hashed)."""
    with _database.session() as session:
        return slide_view(session, slide_id, cell_limit=cell_limit)


def _read_picker(url: str, _database: Database, limit: int) -> list[PickerSlide]:
    with _database.session() as session:
        return slides_for_picker(session, limit)


def _read_region(
    url: str,
    _database: Database,
    analysis_id: int,
    stored_path: str | None,
    center: tuple[float, float],
    size: int,
    dimensions: tuple[int, int] | None,
    highlight: int | None,
    limits: tuple[int, int],
) -> Picture:
    """The region picture: the cells in the window (read here), drawn on the scan's pixels."""
    with _database.session() as session:
        cells = cells_in_region(session, analysis_id, region_box(center, size, dimensions), limit=REGION_CELL_LIMIT)
    return region_view(
        stored_path,
        center,
        cells,
        size=size,
        highlight=highlight,
        max_file_bytes=limits[0],
        max_image_pixels=limits[1],
    )


def _read_crop(results_dir: str | None, file: str) -> Picture:
    return load_gallery_crop(results_dir, file)


def _read_overlay(results_dir: str | None, name: str | None) -> Picture:
    return load_overlay(results_dir, name)


@functools.cache
def _cached(ttl: float) -> dict[str, Callable[..., Any]]:
    """This page's cached reads, for the configured TTL (made once per TTL, so the caches persist across runs)."""
    data = functools.partial(st.cache_data, ttl=ttl, show_spinner=False)
    return {
        "view": data(max_entries=64)(_read_view),
        "picker": data(max_entries=8)(_read_picker),
        "region": data(max_entries=32)(_read_region),
        # Result files do not change once written, but a re-score rewrites them: same TTL.
        "crop": data(max_entries=2000)(_read_crop),
        "overlay": data(max_entries=4)(_read_overlay),  # a 2048-px overlay is 12 MB of pixels
    }


def _reads(ctx: DashboardContext) -> dict[str, Callable[..., Any]]:
    return _cached(float(ctx.settings.dashboard.cache_ttl_seconds))


def _url(ctx: DashboardContext) -> str:
    return ctx.database.url.render_as_string(hide_password=False)


# -- writes (widget callbacks: they run before the page is drawn again) -------------------------------------------
def _save_review(ctx: DashboardContext, slide_id: int, cell_id: int, label: str | None = None) -> None:
    """Store one cell's class (``label``, else the class chosen in the panel), recorded under the user."""
    if label is None:
        label = str(st.session_state.get(_label_key(slide_id, cell_id)))
    else:
        st.session_state.pop(_label_key(slide_id, cell_id), None)  # the class picker then shows the saved label

    def write(session: Session) -> str:
        cell = queries.review_cell(session, cell_id, label=label, reviewer=ctx.user)
        verb = "confirmed as" if cell.predicted_class == label else f"corrected from {cell.predicted_class} to"
        return f"Cell #{cell_id} {verb} {label}, recorded as {ctx.user}."

    store(ctx, write, what="The review was not saved", expected=(LookupError, ValueError), refused_hint=" Try again.")


def _mark_reviewed(ctx: DashboardContext, slide_id: int) -> None:
    """Record that the user finished reviewing the slide, in one transaction."""

    def write(session: Session) -> str:
        queries.mark_slide_reviewed(session, slide_id, reviewer=ctx.user)
        return f"Slide #{slide_id} marked reviewed by {ctx.user}."

    store(ctx, write, what="The slide was not marked reviewed", expected=(LookupError,))


def _rescore(ctx: DashboardContext, slide_id: int) -> None:
    """Queue the slide again: the next intake pass analyses it with the current champions."""

    def write(session: Session) -> str:
        queries.requeue_slide(session, slide_id, reason="re-score with the current champions", actor=ctx.user)
        return f"Slide #{slide_id} queued for a re-score with the current models, by {ctx.user}."

    store(ctx, write, what="Not queued", expected=(LookupError, ValueError, queries.InvalidTransitionError))


def _older_models(ctx: DashboardContext, view: SlideView) -> None:
    """Say that newer champions exist, and offer a re-score unless the slide is signed out on this result."""
    if view.signout_status == "signed out":
        st.info("Newer models are champions now; this slide was signed out on this result, which is kept.")
        return
    st.info("Newer models are champions now: this result comes from older ones.")
    st.button(
        "Re-score with the current models", key=f"slide_{view.id}_rescore", on_click=_rescore, args=(ctx, view.id)
    )


def _choose_cell(slide_id: int, cell_id: int) -> None:
    st.session_state[_cell_key(slide_id)] = cell_id


def _step_cell(slide_id: int, ids: list[int], step: int) -> None:
    """Choose the next (``step`` 1) or previous (-1) cell of the review order, stopping at either end."""
    current = st.session_state.get(_cell_key(slide_id))
    position = ids.index(current) if current in ids else 0
    st.session_state[_cell_key(slide_id)] = ids[min(max(position + step, 0), len(ids) - 1)]


# -- formatting -----------------------------------------------------------------------------------------------------
def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def _cell_label(cell: CellRow | None, cell_id: int) -> str:
    if cell is None:
        return f"#{cell_id}"
    reviewed = f", reviewed {cell.reviewer_label}" if cell.reviewer_label else ""
    return f"#{cell.id} {cell.predicted_class} {cell.suspicion:.2f} at ({cell.x:.0f}, {cell.y:.0f}){reviewed}"


# -- the page -------------------------------------------------------------------------------------------------------
def render(ctx: DashboardContext) -> None:
    """Draw the slide page for the selected slide, or a picker when none is selected."""
    slide_id = navigation.selected_slide()
    if slide_id is None:
        st.title("Slide review")
        _picker(ctx, "Choose a slide to review (the worklist opens one too).")
        return
    try:
        view: SlideView = _reads(ctx)["view"](_url(ctx), ctx.database, slide_id, DEFAULT_CELL_LIMIT)
    except LookupError:
        st.title("Slide review")
        st.error(f"There is no slide #{slide_id}: it may have been removed. Choose another.")
        _picker(ctx, "Choose a slide to review.")
        return
    except SQLAlchemyError as e:
        st.error(f"Cannot read slide #{slide_id} from the database ({e.__class__.__name__}). Reload the page.")
        return
    st.query_params[navigation.SLIDE_PARAM] = str(slide_id)

    _header(ctx, view)
    show_flash()
    if not view.has_analysis:
        _no_result(ctx, view)
        with st.expander("Open another slide"):
            _picker(ctx, "Another slide:")
        return

    top_left, top_right = st.columns([3, 2], gap="large")
    gallery_area, signout_area, table_area = st.container(key="gallery"), st.container(key="signout"), st.container()
    with table_area:
        _cell_table(view)  # before the review panel, so a row picked in it becomes the chosen cell
    with top_right:
        chosen = _review_panel(ctx, view)
    with top_left:
        _pictures(ctx, view, chosen)
    with gallery_area:
        _gallery(ctx, view)
    with signout_area:
        signout_panel(ctx, view)
    with st.expander("Open another slide"):
        _picker(ctx, "Another slide:")


def _picker(ctx: DashboardContext, prompt: str) -> None:
    try:
        slides: list[PickerSlide] = _reads(ctx)["picker"](_url(ctx), ctx.database, PICKER_LIMIT)
    except SQLAlchemyError as e:
        st.error(f"Cannot list the slides ({e.__class__.__name__}). Check the database, then reload.")
        return
    if not slides:
        st.info("No slides yet: scans dropped into the intake folder appear here once analysed.")
        return
    labels = {s.id: s.label for s in slides}
    picked = st.selectbox(
        prompt,
        list(labels),
        index=None,
        format_func=lambda i: labels.get(i, f"#{i}"),
        placeholder="Slides to review first, most abnormal first",
        key="slide_picker",
    )
    if st.button("Open slide", key="slide_picker_open", disabled=picked is None, type="primary") and picked:
        st.query_params[navigation.SLIDE_PARAM] = str(picked)
        navigation.open_slide(int(picked))
        st.rerun()


_FINISHED_VERB = {"failed": "failed", "quarantined": "quarantined", "duplicate": "recognised as a duplicate"}
"""What the caption calls a slide's end time, by status (only a finished analysis is "analysed")."""


def _header(ctx: DashboardContext, view: SlideView) -> None:
    st.title(view.name)
    st.caption(
        f"Slide #{view.id} · {view.status} · received {_when(view.received_at)}"
        + (f" · {_FINISHED_VERB.get(view.status, 'analysed')} {_when(view.finished_at)}" if view.finished_at else "")
    )
    score = "-" if view.abnormal_score is None else f"{view.abnormal_score:.3f}"
    category, adequacy, abnormal, status = st.columns(4)
    category.metric("Category", view.category or "-")
    adequacy.metric("Adequacy", view.adequacy or "-", help=view.details.get("adequacy_reason") or None)
    abnormal.metric("Abnormal score", score)
    status.metric("Status", view.status)
    reason = view.details.get("category_reason")
    if reason and view.has_analysis:
        st.markdown(f"**Why:** {reason}")
    facts = []
    if view.reviewed_at is not None:
        facts.append(f"**Reviewed** by {view.reviewed_by} at {_when(view.reviewed_at)}")
    else:
        facts.append("**Not reviewed yet**")
    if view.has_analysis:
        facts.append(f"{view.cells_reviewed} of {view.cells_total} cells reviewed")
    url = ctx.flow_run_url(view.flow_run_id)
    if url:
        facts.append(f"[Flow run in the Prefect UI]({url})")
    elif view.flow_run_id:
        facts.append(f"flow run `{view.flow_run_id}`")
    st.markdown(" · ".join(facts))
    if view.stage1_model or view.stage2_model:
        st.caption(f"Models: stage 1 {view.stage1_model or '-'}, stage 2 {view.stage2_model or '-'}")
        if view.older_models:
            _older_models(ctx, view)
        if "synthetic demo data" in f"{view.stage1_model}{view.stage2_model}":
            st.warning("This result comes from a model trained on synthetic demo data: it is not for diagnosis.")


def _no_result(ctx: DashboardContext, view: SlideView) -> None:
    if view.status == "duplicate":
        st.info(f"This scan is a duplicate of slide #{view.duplicate_of_id}; open that one to review it.")
    elif view.status == "failed":
        st.error(
            f"The analysis of this scan failed: {view.error or 'no reason was recorded'}. "
            "The Intake page lists it with a Retry."
        )
    elif view.status == "quarantined":
        st.error(
            f"This scan was not analysed: {view.error or 'no reason was recorded'}. The file is kept in the "
            "quarantine folder; the Intake page lists it with a Retry."
        )
    else:
        _wait_for_result(ctx, view)


def _wait_for_result(ctx: DashboardContext, view: SlideView) -> None:
    """Say the slide is waiting, and look again every few seconds: the whole page redraws when its result lands."""

    @st.fragment(run_every=ctx.settings.dashboard.refresh_seconds)
    def waiting() -> None:
        try:
            now: SlideView = _reads(ctx)["view"](_url(ctx), ctx.database, view.id, DEFAULT_CELL_LIMIT)
        except (LookupError, SQLAlchemyError):
            now = view  # the next look says more; the page already shows what is known
        if (now.status, now.has_analysis) != (view.status, view.has_analysis):
            st.rerun()
        st.info(f"This slide has no result yet (it is {view.status}); the page fills in when its analysis ends.")
        if now.progress_fraction is not None:
            st.progress(now.progress_fraction, text=f"Analysing: {now.progress_note}")

    waiting()


def _cell_table(view: SlideView) -> None:
    st.subheader("Cells")
    st.caption(f"The {len(view.cells)} most suspicious of {view.cells_total} cells. Pick a row to review that cell.")
    if not view.cells:
        st.info("The analysis found no cells on this slide.")
        return
    rows = [
        {
            "id": c.id,
            "class": c.predicted_class,
            "suspicion": c.suspicion,
            **{f"P({k})": c.probabilities.get(k) for k in BETHESDA_CLASSES},
            "reviewed as": c.reviewer_label or "",
            "reviewed by": c.reviewer or "",
            "reviewed at": c.reviewed_at,
            "x": round(c.x),
            "y": round(c.y),
        }
        for c in view.cells
    ]
    key = _table_key(view.id)
    event = st.dataframe(
        pd.DataFrame(rows).astype({"reviewed at": "datetime64[ns, UTC]"}),
        hide_index=True,
        key=key,
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "suspicion": st.column_config.ProgressColumn("suspicion", min_value=0.0, max_value=1.0, format="%.2f"),
            **{f"P({k})": st.column_config.NumberColumn(format="%.2f") for k in BETHESDA_CLASSES},
            "reviewed at": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", timezone="UTC"),
        },
    )
    selected = list(getattr(getattr(event, "selection", None), "rows", None) or [])
    seen_key = _table_seen_key(view.id)
    if selected != st.session_state.get(seen_key):
        st.session_state[seen_key] = selected
        if selected and 0 <= selected[0] < len(view.cells):
            _choose_cell(view.id, view.cells[selected[0]].id)


def _review_panel(ctx: DashboardContext, view: SlideView) -> CellRow | None:
    """The chosen cell, its class to confirm or correct, and the slide's "reviewed" button; returns the cell."""
    st.subheader("Review")
    if ctx.signed_in:
        st.caption(f"Reviews are recorded as **{ctx.user}**.")
    else:
        st.warning(f"Open access: reviews are recorded as **{ctx.user}**, not a person's name.")
    cells = view.reviewable_cells
    chosen: CellRow | None = None
    if cells:
        ids = [c.id for c in cells]
        key = _cell_key(view.id)
        if st.session_state.get(key) not in ids:
            st.session_state[key] = ids[0]
        by_id = {c.id: c for c in cells}
        cell_id = st.selectbox(
            "Cell", ids, key=key, format_func=lambda i: _cell_label(by_id.get(i), i), help="Most suspicious first."
        )
        chosen = by_id.get(int(cell_id)) if cell_id is not None else None
    if chosen is not None:
        _chosen_cell(ctx, view, chosen, [c.id for c in cells])
    else:
        st.info("No cell to review on this slide.")
    st.divider()
    st.button(
        "Mark slide reviewed" if view.reviewed_at is None else "Mark slide reviewed again",
        key=f"slide_{view.id}_mark_reviewed",
        on_click=_mark_reviewed,
        args=(ctx, view.id),
    )
    return chosen


def _chosen_cell(ctx: DashboardContext, view: SlideView, chosen: CellRow, ids: list[int]) -> None:
    """The chosen cell's crop and probabilities, and the ways to grade it: keys, one-press buttons, or a class."""
    entry = view.gallery_entry(chosen.id)
    if entry is not None:
        picture: Picture = _reads(ctx)["crop"](view.results_dir, entry.file)
        if picture.ok:
            st.image(picture.source, caption=_crop_caption(entry), width=160)
    st.markdown(
        f"Model: **{chosen.predicted_class}** · "
        + " · ".join(f"{k} {chosen.probabilities.get(k, 0.0):.2f}" for k in BETHESDA_CLASSES)
    )
    if chosen.reviewer_label:
        st.caption(f"Reviewed as {chosen.reviewer_label} by {chosen.reviewer} at {_when(chosen.reviewed_at)}.")
    with st.container(horizontal=True, gap="small"):
        st.button(
            f"Accept {chosen.predicted_class}", key=f"slide_{view.id}_accept", shortcut=SHORTCUTS["accept"],
            on_click=_save_review, args=(ctx, view.id, chosen.id, chosen.predicted_class),
            help="Confirm the model's class for this cell.",
        )  # fmt: skip
        st.button(
            "Reject: NILM", key=f"slide_{view.id}_reject", shortcut=SHORTCUTS["reject"],
            on_click=_save_review, args=(ctx, view.id, chosen.id, "NILM"), disabled=chosen.predicted_class == "NILM",
            help="The cell is not abnormal: record it as NILM.",
        )  # fmt: skip
    with st.container(horizontal=True, gap="small"):
        st.button(
            "Previous", key=f"slide_{view.id}_previous", shortcut=SHORTCUTS["previous"],
            on_click=_step_cell, args=(view.id, ids, -1), disabled=chosen.id == ids[0],
        )  # fmt: skip
        st.button(
            "Next", key=f"slide_{view.id}_next", shortcut=SHORTCUTS["next"],
            on_click=_step_cell, args=(view.id, ids, 1), disabled=chosen.id == ids[-1],
        )  # fmt: skip
    label_key = _label_key(view.id, chosen.id)
    st.radio(
        "Class",
        BETHESDA_CLASSES,
        index=BETHESDA_CLASSES.index(chosen.label) if chosen.label in BETHESDA_CLASSES else 0,
        key=label_key,
        horizontal=True,
    )
    st.button(
        "Save",
        key=f"slide_{view.id}_save",
        type="primary",
        on_click=_save_review,
        args=(ctx, view.id, chosen.id),
        help="Confirm or correct this cell's class; retraining uses it.",
    )


def _pictures(ctx: DashboardContext, view: SlideView, chosen: CellRow | None) -> None:
    overlay: Picture = _reads(ctx)["overlay"](view.results_dir, view.overlay_file)
    if overlay.ok:
        st.image(overlay.source, caption="Overlay: every cell boxed in its class colour", width="stretch")
    else:
        st.warning(overlay.message)
    if view.scan_kind != "slide":
        return
    st.subheader("Region view")
    if chosen is None:
        st.info("Choose a cell to see the scan around it.")
        return
    size = st.select_slider("Region (level-0 pixels)", REGION_SIZES, value=512, key=f"slide_{view.id}_region_size")
    dimensions = (view.width, view.height) if view.width and view.height else None
    limits = (ctx.settings.limits.max_file_bytes, ctx.settings.limits.max_image_pixels)
    picture: Picture = _reads(ctx)["region"](
        _url(ctx),
        ctx.database,
        view.analysis_id,
        view.stored_path,
        (chosen.x, chosen.y),
        int(size),
        dimensions,
        chosen.id,
        limits,
    )
    if picture.ok:
        st.image(picture.image, caption=f"Around cell #{chosen.id} (ringed): {picture.caption}", width="stretch")
    else:
        st.warning(picture.message)


def _gallery(ctx: DashboardContext, view: SlideView) -> None:
    st.subheader(f"Gallery: the {len(view.gallery)} most suspicious cells" if view.gallery else "Gallery")
    if not view.gallery:
        st.info("This analysis kept no gallery (gallery size 0, or no cells).")
        return
    keys = ", ".join(f"{key} {what}" for what, key in SHORTCUTS.items())
    st.caption(
        "Every class together, the most likely abnormal (1 - p(NILM)) first; a nucleus found twice is shown once. "
        f"Review opens a cell in the panel above (keys there: {keys}); ✓ accepts the model's class, ✗ records NILM."
    )
    entries = list(view.gallery)
    show_all = len(entries) > GALLERY_SHOWN and st.toggle(
        f"Show all {len(entries)}", key=f"slide_{view.id}_gallery_all"
    )
    shown = entries if show_all else entries[:GALLERY_SHOWN]
    if len(shown) == len(entries):
        gallery_shown_whole(ctx, view)
    elif ctx.settings.dashboard.signout_requires_gallery:
        st.caption(f"Sign-out asks that you see all {len(entries)}: turn on **Show all**.")
    read = _reads(ctx)["crop"]
    for start in range(0, len(shown), GALLERY_COLUMNS):
        for column, entry in zip(st.columns(GALLERY_COLUMNS), shown[start : start + GALLERY_COLUMNS], strict=False):
            with column:
                _gallery_crop(ctx, view, entry, read)


def _crop_caption(entry: GalleryEntry) -> str:
    """``#<cell id> HSIL 0.93``: the cell's one id, its class and that class's probability."""
    name = f"#{entry.cell_id}" if entry.cell_id is not None else f"crop {entry.rank}"
    return f"{name} {entry.cls} {entry.probability:.2f}"


def _gallery_crop(ctx: DashboardContext, view: SlideView, entry: GalleryEntry, read: Callable[..., Any]) -> None:
    """One crop with its caption, and three buttons: open it in the review panel, accept, reject."""
    picture: Picture = read(view.results_dir, entry.file)
    cell = view.cell(entry.cell_id) if entry.cell_id is not None else None
    caption = _crop_caption(entry) + (f" · reviewed {cell.reviewer_label}" if cell and cell.reviewer_label else "")
    if picture.ok:
        st.image(picture.source, caption=caption, width="stretch")
    else:
        st.caption(f"{caption}: {picture.message}")
    if entry.cell_id is None:
        st.caption("No cell row matches this crop.")
        return
    with st.container(horizontal=True, gap="small"):
        st.button(
            "Review", key=f"slide_{view.id}_gallery_{entry.rank}", on_click=_choose_cell,
            args=(view.id, entry.cell_id), help="Open this cell in the review panel.",
        )  # fmt: skip
        st.button(
            "✓", key=f"slide_{view.id}_gallery_{entry.rank}_accept", on_click=_save_review,
            args=(ctx, view.id, entry.cell_id, entry.cls), help=f"Accept: the cell is {entry.cls}.",
        )  # fmt: skip
        st.button(
            "✗", key=f"slide_{view.id}_gallery_{entry.rank}_reject", on_click=_save_review,
            args=(ctx, view.id, entry.cell_id, "NILM"), disabled=entry.cls == "NILM",
            help="Reject: the cell is not abnormal (NILM).",
        )  # fmt: skip
