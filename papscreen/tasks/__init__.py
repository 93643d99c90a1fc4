"""papscreen.tasks."""
