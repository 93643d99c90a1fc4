"""Placeholder: filled in by the datasets work."""

from __future__ import annotations

import typer

app = typer.Typer()
