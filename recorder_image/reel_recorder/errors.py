"""Errors that end a recording, each with a failure reason a user can act on."""

from __future__ import annotations

from reel_api.vocabulary import FailureReason


class RecorderError(Exception):
    """A problem that ends the recording.

    ``reason`` is a ``FailureReason`` (CamelCase, machine-readable; it becomes the condition reason on the
    RecordingSession), ``str(err)`` is the message for a person.
    """

    def __init__(self, reason: FailureReason, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


# The failure reasons the recorder reports (reel_api.vocabulary says what each means); the operator puts them
# in the session's conditions. Module-level names so the recorder's modules import what they raise.
JANUS_UNREACHABLE = FailureReason.JANUS_UNREACHABLE
JANUS_ERROR = FailureReason.JANUS_ERROR
JANUS_LOST = FailureReason.JANUS_LOST  # the connection lost for longer than reconnectSeconds
ROOM_NOT_FOUND = FailureReason.ROOM_NOT_FOUND
ROOM_UNAUTHORIZED = FailureReason.ROOM_UNAUTHORIZED  # wrong pin or token
FORWARD_UNAUTHORIZED = FailureReason.FORWARD_UNAUTHORIZED  # wrong room secret or admin key
CODEC_UNSUPPORTED = FailureReason.CODEC_UNSUPPORTED
STORAGE_FAILED = FailureReason.STORAGE_FAILED
DISK_FULL = FailureReason.DISK_FULL
INVALID_SESSION = FailureReason.INVALID_SESSION
INTERNAL = FailureReason.INTERNAL_ERROR
