"""Errors that end a recording, each with a stop reason a user can act on."""

from __future__ import annotations


class RecorderError(Exception):
    """A problem that ends the recording.

    ``reason`` is a CamelCase machine-readable cause (it becomes the condition reason on the
    RecordingSession), ``str(err)`` is the message for a person.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


# Reasons used by the recorder; the operator maps them onto the session status.
JANUS_UNREACHABLE = "JanusUnreachable"
JANUS_ERROR = "JanusError"
ROOM_NOT_FOUND = "RoomNotFound"
ROOM_UNAUTHORIZED = "RoomUnauthorized"  # wrong pin or token
FORWARD_UNAUTHORIZED = "ForwardUnauthorized"  # wrong room secret or admin key
CODEC_UNSUPPORTED = "CodecUnsupported"
STORAGE_FAILED = "StorageFailed"
DISK_FULL = "DiskFull"
INVALID_SESSION = "InvalidSession"
INTERNAL = "InternalError"
