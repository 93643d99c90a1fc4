"""The global concurrency limit every analysis holds a slot of (``gpu`` by default)."""

from __future__ import annotations

from prefect.client.orchestration import get_client

from papscreen.config import Settings

__all__ = ["ensure_compute_limit"]


def ensure_compute_limit(settings: Settings) -> None:
    """Create the compute limit with the configured slots, or set its slots; harmless when it is right.

    Without it Prefect would let every analysis run at once (a missing limit does not block).
    """
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(
            settings.orchestration.compute_limit, settings.orchestration.compute_slots
        )
