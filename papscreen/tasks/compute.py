"""A slot of the compute limit (``gpu``), whose lease id is written on the slide it is used for.

Prefect's ``concurrency`` context manager hides its lease, so a worker killed mid-analysis (SIGKILL, power
cut) would keep its slot until the lease expires and stall the restarted worker. Here the lease id is stored
with the slide; the recovery step of the next intake pass releases the dead analysis' slot at once
(:func:`release_compute_lease`). Built on Prefect's own acquire/renew/release helpers (pinned Prefect 3.9).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.concurrency._sync import acquire_concurrency_slots_with_lease, release_concurrency_slots_with_lease

__all__ = ["compute_slot", "release_compute_lease"]

COMPUTE_LEASE_SECONDS = 300.0
"""Prefect's lease on a slot; renewed while the analysis runs, expires this long after a worker vanished."""


@contextmanager
def compute_slot(limit: str, on_acquired: Callable[[str | None], None]) -> Iterator[None]:
    """Hold one slot of ``limit`` for the block; ``on_acquired(lease_id)`` records the lease (None: no limit)."""
    response = acquire_concurrency_slots_with_lease([limit], 1, lease_duration=COMPUTE_LEASE_SECONDS)
    if not response.limits:  # the limit does not exist: nothing to hold
        on_acquired(None)
        yield
        return
    on_acquired(str(response.lease_id))
    try:
        with maintain_concurrency_lease(response.lease_id, COMPUTE_LEASE_SECONDS, raise_on_lease_renewal_failure=False):
            yield
    finally:
        with suppress(Exception):
            release_concurrency_slots_with_lease(response.lease_id)
        with suppress(Exception):
            on_acquired(None)


def release_compute_lease(lease_id: str) -> bool:
    """Free the slot of a dead analysis; ``False`` when Prefect no longer knows the lease (already expired)."""
    try:
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(UUID(lease_id))
    except Exception:  # noqa: BLE001 - an expired or unknown lease is already free
        return False
    return True
