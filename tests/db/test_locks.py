"""Named work locks in the database: one holder at a time, renewal, take-over of a stale or dead holder."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import update

from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import WorkLock, utcnow


def test_one_holder_at_a_time_until_released(database: Database) -> None:
    with database.session() as session:
        assert queries.acquire_lock(session, "intake", owner="a", lease_seconds=60)
    with database.session() as session:
        assert not queries.acquire_lock(session, "intake", owner="b", lease_seconds=60)
        assert queries.lock_holder(session, "intake") == "a"
        assert queries.renew_lock(session, "intake", owner="a", lease_seconds=60)
        assert not queries.renew_lock(session, "intake", owner="b", lease_seconds=60)
    with database.session() as session:
        queries.release_lock(session, "intake", owner="a")
    with database.session() as session:
        assert queries.acquire_lock(session, "intake", owner="b", lease_seconds=60)


def test_a_stale_or_dead_holder_is_taken_over_and_loses_its_renewal(database: Database) -> None:
    with database.session() as session:
        assert queries.acquire_lock(session, "intake", owner="a", lease_seconds=60)
    with database.session() as session:
        assert queries.acquire_lock(session, "intake", owner="b", lease_seconds=60, owner_is_dead=lambda o: o == "a")
    with database.session() as session:
        session.execute(update(WorkLock).values(expires_at=utcnow() - timedelta(seconds=1)))
    with database.session() as session:
        assert queries.acquire_lock(session, "intake", owner="c", lease_seconds=60)
    with database.session() as session:
        assert not queries.renew_lock(session, "intake", owner="b", lease_seconds=60)
        assert queries.lock_holder(session, "intake") == "c"


def test_of_many_racing_takers_exactly_one_wins(database: Database) -> None:
    with database.session() as session:
        queries.acquire_lock(session, "intake", owner="old", lease_seconds=60)
        session.execute(update(WorkLock).values(expires_at=utcnow() - timedelta(seconds=1)))
    start, winners = threading.Barrier(6), []

    def take(owner: str) -> None:
        start.wait(timeout=30)
        with database.session() as session:
            if queries.acquire_lock(session, "intake", owner=owner, lease_seconds=60):
                winners.append(owner)

    threads = [threading.Thread(target=take, args=(f"t{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(winners) == 1
