"""Errors a user can act on.

Every :class:`SmartbinError` carries one line that says what is wrong and what to do;
the CLI prints it as ``smartbin: error: ...`` without a traceback (``--debug`` shows one).
"""


class SmartbinError(Exception):
    """A user-facing error with a one-line message."""


class ConfigError(SmartbinError):
    """The configuration file is missing, unreadable or invalid."""


class BundleError(SmartbinError):
    """A model bundle is missing, corrupt, or does not fit this bin."""


class CameraError(SmartbinError):
    """The camera could not be opened or could not deliver a frame."""
