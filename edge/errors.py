"""One error tree, so the CLI and the daemon can tell our faults from bugs.

Every error the user can fix is a ``MaskgateError``: its message is one line that says what is
wrong and what to do. The CLI prints it and exits with ``exit_code`` (2: bad usage or bad input).
"""

from __future__ import annotations


class MaskgateError(Exception):
    """Root of every error maskgate raises on purpose."""

    exit_code = 2


class ConfigError(MaskgateError):
    """The configuration file or a command-line value is wrong."""


class CameraError(MaskgateError):
    """A frame source cannot be opened or stopped delivering frames."""


class ModelError(MaskgateError):
    """A model file is missing, altered, or cannot run."""


class VaultError(MaskgateError):
    """The sealed template file cannot be read or written."""


class DoorError(MaskgateError):
    """The door hardware (relay, inputs) cannot be driven."""


class PrivacyError(MaskgateError):
    """Something tried to send data off the device or write an image to disk."""
