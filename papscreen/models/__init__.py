"""papscreen.models."""
