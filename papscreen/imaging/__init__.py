"""papscreen.imaging."""
