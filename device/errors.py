"""Errors a user can act on.

Every :class:`SmartbinError` carries one line that says what is wrong and what to do;
the CLI prints it as ``smartbin: error: ...`` without a traceback (``--debug`` shows one).
:func:`os_error_reason` says which file-system mistake an :class:`OSError` is, in the same
words everywhere ("no such file or folder", "permission denied", "is a directory", ...).
"""

import errno

_OS_ERROR_REASONS = {
    errno.ENOENT: "no such file or folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "not a directory",
    errno.EEXIST: "already exists",
    errno.ENOTEMPTY: "folder not empty",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links",
}


class SmartbinError(Exception):
    """A user-facing error with a one-line message."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same clean-ups run."""


class ConfigError(SmartbinError):
    """The configuration file is missing, unreadable or invalid."""


class BundleError(SmartbinError):
    """A model bundle is missing, corrupt, or does not fit this bin."""


class CameraError(SmartbinError):
    """The camera could not be opened or could not deliver a frame."""


def os_error_reason(exc: OSError) -> str:
    """What an :class:`OSError` means for the user's path, without the errno number."""
    if exc.errno in _OS_ERROR_REASONS:
        return _OS_ERROR_REASONS[exc.errno]
    text = (exc.strerror or str(exc) or type(exc).__name__).strip()
    return text[:1].lower() + text[1:]


def os_error_message(exc: OSError) -> str:
    """``PATH: reason`` for an :class:`OSError` (``reason`` alone when it names no path)."""
    reason = os_error_reason(exc)
    if exc.filename is None:
        return reason
    if exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {reason}"
    return f"{exc.filename}: {reason}"
