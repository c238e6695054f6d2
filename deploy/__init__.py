"""smartbin deploy."""
