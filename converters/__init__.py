"""smartbin converters."""
