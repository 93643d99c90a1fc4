"""What `papscreen intake --once` prints: one row per file, those still being written or waiting to be retried too."""

from __future__ import annotations

from rich.console import Console

from papscreen.cli.service_cmd import _outcome_table


def test_the_pass_table_names_the_files_left_for_later() -> None:
    report = {
        "outcomes": [{"name": "a.png", "status": "queued", "slide_id": 1, "detail": "field 768x576"}],
        "still_writing": ["/lab/intake/b.png"],
        "retry_later": ["c.png"],
        "analyses": [],
    }
    console = Console(width=200, record=True)
    console.print(_outcome_table(report))
    text = console.export_text()
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 2}
    assert "queued" in rows["a.png"]
    assert "still being written" in rows["/lab/intake/b.png"]
    assert "waiting to be retried" in rows["c.png"]
