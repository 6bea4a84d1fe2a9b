"""Which ingest records the session (``spec.recording.ingest``): decided in the recorder, which alone reads the
room's credentials Secret (the operator mounts it without reading it).

The values are reel_api.models.Ingest's (this side of the exec has no pydantic; a unit test keeps them equal).
"""

from __future__ import annotations

from ..room.credentials import RoomCredentials

FORWARD = "forward"  # Janus forwards each publisher's RTP (needs the room secret / admin key): ingest/forward.py
WEBRTC = "webrtc"  # the recorder subscribes like any participant (aiortc): ingest/webrtc.py
AUTO = "auto"  # forward when forwarding credentials are given, else webrtc


def choose_ingest(requested: str, credentials: RoomCredentials) -> str:
    """FORWARD or WEBRTC. ``auto``: forward when the room credentials hold a room secret or an admin key (what
    ``rtp_forward`` may need), else webrtc (a subscription needs only what joining needs: the pin)."""
    if requested in (FORWARD, WEBRTC):
        return requested
    if requested != AUTO:
        raise ValueError(f"unknown ingest {requested!r}")
    return FORWARD if credentials.secret or credentials.admin_key else WEBRTC
