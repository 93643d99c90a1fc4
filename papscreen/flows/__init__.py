"""papscreen.flows."""
