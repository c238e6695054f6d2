"""smartbin training."""
