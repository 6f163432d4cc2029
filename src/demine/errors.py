"""Exception types of demine.

Every error that bad input can cause is one of these, with a message that names
the file, stream, frame or field that was wrong.  They all derive from
:class:`DemineError`, so a script can catch everything demine raises on purpose
with one ``except`` clause, and the CLI turns them into one line and exit status 2.
"""

from __future__ import annotations


class DemineError(Exception):
    """Base class of every error demine raises on purpose."""


class RecordingError(DemineError):
    """A recording cannot be opened, read or written as asked."""


class NotARecordingError(RecordingError):
    """The file is HDF5 but not a demine recording (no or wrong format attribute)."""


class FormatVersionError(RecordingError):
    """The recording is of a format version this software cannot read."""


class SchemaError(RecordingError):
    """A recording, stream or table does not follow the declared layout."""


class VendorFormatError(DemineError):
    """A vendor radar file (DZT, RD3, DT1, SEG-Y, …) is malformed or truncated."""


class FrameError(DemineError):
    """A device frame is malformed (bad sync, length, CRC or field value)."""


class ChecksumError(FrameError):
    """A frame is well formed but its checksum does not match its content (the
    bytes were changed on the way: counted as a CRC error, not a bad line)."""


class ConfigError(DemineError):
    """An option, processing chain or configuration file is invalid."""


class MissingCalibrationError(ConfigError):
    """A processing step or detector needs a value of the stream's calibration
    that it does not give (``key``: ``"gate_times"``, ``"sample_interval"``)."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


class ModelError(DemineError):
    """A classifier model file is invalid, tampered with, or does not fit the data."""
