"""smartbin device."""
