"""The room's credentials: from a mounted Secret (one file per key), else from the settings (environment).

Keys (the Secret named by ``spec.room.credentialsSecretRef``): ``pin`` (join the room), ``secret`` (the room
secret, for forwarding), ``adminKey`` (when Janus locks forwarding), ``token`` (Janus API token),
``turnUsername`` and ``turnCredential`` (ingest webrtc: for the TURN servers of ``spec.room.iceServers``). A file
in the folder wins over the variable (REEL_ROOM_PIN, REEL_ROOM_SECRET, REEL_ROOM_ADMIN_KEY, REEL_ROOM_TOKEN,
REEL_ROOM_TURN_USERNAME, REEL_ROOM_TURN_CREDENTIAL: settings.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

#: Secret key -> RoomCredentials field
SECRET_KEYS = {"pin": "pin", "secret": "secret", "adminKey": "admin_key", "token": "token",
               "turnUsername": "turn_username", "turnCredential": "turn_credential"}


@dataclass(frozen=True)
class RoomCredentials:
    pin: str | None = None
    secret: str | None = None
    admin_key: str | None = None
    token: str | None = None
    turn_username: str | None = None
    turn_credential: str | None = None


def room_credentials(folder: str | None, fallback: RoomCredentials = RoomCredentials()) -> RoomCredentials:
    """``fallback`` (from the environment) with every key that ``folder`` holds a file for replaced by it."""
    found = {}
    for key, attr in SECRET_KEYS.items():
        if folder and (Path(folder) / key).is_file():
            found[attr] = (Path(folder) / key).read_text().strip()
    return replace(fallback, **found)
