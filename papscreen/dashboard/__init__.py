"""papscreen.dashboard."""
