"""papscreen.db."""
