"""rtcode's exceptions.

One base class; each subclass also subclasses the builtin it behaves like, so
callers that only know Python's exceptions still catch them sensibly. The CLI
turns them into messages and exit codes at the edge.
"""

from __future__ import annotations


class RtcodeError(Exception):
    """Base class of every error rtcode raises on purpose."""


class NotDicomError(RtcodeError, ValueError):
    """The file is not a DICOM file (no 'DICM' marker and no DICOM header)."""


class DicomReadError(RtcodeError, ValueError):
    """The file looks like DICOM but cannot be read (truncated or malformed)."""


class PolicyError(RtcodeError, ValueError):
    """A policy file is invalid; the message names the key and what is allowed."""
