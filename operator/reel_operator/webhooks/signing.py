"""Signing webhook requests the Standard Webhooks way (https://www.standardwebhooks.com/; Svix and others send
and verify the same headers), so receivers can use a library of that spec or the few lines in README "Webhooks".

    webhook-id:        the event's id (stable across retries: a receiver drops an id it has already seen)
    webhook-timestamp: Unix seconds when this attempt was signed (a receiver drops requests older than ~5 min)
    webhook-signature: "v1," + base64(HMAC-SHA256(key, f"{id}.{timestamp}." + body))

The key is the bytes of the Secret key; a value starting with ``whsec_`` is read as base64 after the prefix
(the form Standard Webhooks libraries generate and expect).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

SIGNATURE_VERSION = "v1"
SECRET_PREFIX = "whsec_"
#: How old a timestamp a receiver should accept (the spec's suggestion; verify()'s default).
TOLERANCE_SECONDS = 300


def signing_key(raw: bytes) -> bytes:
    """The HMAC key from the Secret's value: base64 after a ``whsec_`` prefix, else the bytes as they are (a
    trailing newline, as ``kubectl create secret --from-file`` keeps it, is dropped)."""
    value = raw.strip(b"\r\n")
    if value.startswith(SECRET_PREFIX.encode()):
        try:
            return base64.b64decode(value[len(SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            return value
    return value


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of one attempt."""
    return {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, msg_id, timestamp, body)}


def verify(key: bytes, head: Mapping[str, str], body: bytes, now: float,
           tolerance: float = TOLERANCE_SECONDS) -> bool:
    """What a receiver does: the timestamp is recent and one of the (space-separated) signatures matches.
    ``head``: the request's headers, lower-case names."""
    try:
        msg_id, timestamp = head["webhook-id"], int(head["webhook-timestamp"])
        signatures = head["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(key, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, s) for s in signatures)
