"""Sign-out rules: who signs which step, the gallery first, one final sign-out, every step audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import SignoutStatus
from papscreen.errors import SignoutError
from tests.db.test_slide_view_queries import seed_models, seed_slide


@pytest.fixture
def slide_id(database: Database, tmp_path: Path) -> int:
    return seed_slide(database, models=seed_models(database), results_dir=tmp_path / "results")


def _viewed(database: Database, slide_id: int, *users: str) -> None:
    with database.session() as s:
        for user in users:
            queries.mark_gallery_viewed(s, slide_id, user=user)


def _sign(database: Database, slide_id: int, interpretation: str, user: str, role: str, **kwargs: object):
    with database.session() as s:
        return queries.sign_out(s, slide_id, interpretation=interpretation, user=user, role=role, **kwargs)


def _slide(database: Database, slide_id: int):
    with database.session() as s:
        return queries.get_slide(s, slide_id)


def test_a_screener_signs_a_normal_slide_out_alone(database: Database, slide_id: int) -> None:
    _viewed(database, slide_id, "ann")
    step = _sign(database, slide_id, "NILM", "ann", "cytotechnologist", comment="  adequate, no atypia  ")
    assert (step.step, step.interpretation, step.comment) == ("final", "NILM", "adequate, no atypia")
    slide = _slide(database, slide_id)
    assert (slide.signout_status, slide.interpretation, slide.signed_out_by) == ("signed out", "NILM", "ann")
    assert slide.signed_out_at is not None
    with pytest.raises(SignoutError, match="was signed out by ann"):
        _sign(database, slide_id, "LSIL", "ann", "cytotechnologist")


def test_an_abnormal_slide_goes_from_the_screener_to_a_pathologist(database: Database, slide_id: int) -> None:
    _viewed(database, slide_id, "ann", "bob", "dr_p")
    first = _sign(database, slide_id, "ASC-H", "ann", "cytotechnologist")
    assert first.step == "screening"
    assert _slide(database, slide_id).signout_status == SignoutStatus.AWAITING_PATHOLOGIST
    with pytest.raises(SignoutError, match="waits for a pathologist"):
        _sign(database, slide_id, "NILM", "bob", "cytotechnologist")
    final = _sign(database, slide_id, "HSIL", "dr_p", "pathologist", comment="agree, high grade")
    assert final.step == "final"
    slide = _slide(database, slide_id)
    assert (slide.signout_status, slide.interpretation, slide.signed_out_by) == ("signed out", "HSIL", "dr_p")
    with database.session() as s:
        trail = queries.signouts_of(s, slide_id)
        events = queries.list_events(s, entity_type="slide", entity_id=slide_id)
    assert [(t.step, t.interpretation, t.signed_by, t.role) for t in trail] == [
        ("screening", "ASC-H", "ann", "cytotechnologist"),
        ("final", "HSIL", "dr_p", "pathologist"),
    ]
    actions = [(e.action, e.actor) for e in events]
    assert ("slide.screened", "ann") in actions
    assert ("slide.signed_out", "dr_p") in actions


def test_signing_needs_the_gallery_seen_unless_the_lab_turns_that_off(database: Database, slide_id: int) -> None:
    with pytest.raises(SignoutError, match="whole gallery"):
        _sign(database, slide_id, "NILM", "ann", "cytotechnologist")
    _viewed(database, slide_id, "bob")  # someone else's look does not count
    with pytest.raises(SignoutError, match="whole gallery"):
        _sign(database, slide_id, "NILM", "ann", "cytotechnologist")
    assert _sign(database, slide_id, "NILM", "ann", "cytotechnologist", require_gallery_viewed=False).step == "final"


def test_what_nobody_may_sign(database: Database, slide_id: int) -> None:
    _viewed(database, slide_id, "root", "ann")
    with pytest.raises(SignoutError, match="admin account"):
        _sign(database, slide_id, "NILM", "root", "admin")
    with pytest.raises(SignoutError, match="not an interpretation"):
        _sign(database, slide_id, "AGC", "ann", "cytotechnologist")
    with pytest.raises(ValueError):
        _sign(database, slide_id, "NILM", "ann", "janitor")
    queued = seed_slide(database, "waiting.svs", analysed=False)
    with pytest.raises(SignoutError, match="no result"):
        _sign(database, queued, "NILM", "ann", "cytotechnologist", require_gallery_viewed=False)
    assert _slide(database, slide_id).signout_status is None


def test_the_gallery_is_marked_viewed_once_per_person_and_analysis(database: Database, slide_id: int) -> None:
    with database.session() as s:
        assert queries.mark_gallery_viewed(s, slide_id, user="ann") is True
        assert queries.mark_gallery_viewed(s, slide_id, user="ann") is False
        assert queries.gallery_viewed_by(s, slide_id, user="ann")
        assert not queries.gallery_viewed_by(s, slide_id, user="bob")
        events = queries.list_events(s, entity_type="slide", entity_id=slide_id)
    assert [e.action for e in events].count("slide.gallery_viewed") == 1
