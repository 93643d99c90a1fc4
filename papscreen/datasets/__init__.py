"""papscreen.datasets."""
