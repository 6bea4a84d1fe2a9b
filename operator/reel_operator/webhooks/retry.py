"""When a refused webhook event is sent again, and when it is given up (pure; delivery.py calls these).

Every answer but a 2xx is a failure, as are connection errors and timeouts: the event is sent again after
``base * 2**(attempt-1)`` seconds, at most ``cap`` (a ``Retry-After`` of the receiver is heeded within the cap),
until ``give_up_after`` seconds have passed since its first attempt; then it is dropped and the next event of
the session goes. Events of a session are never sent out of order: the next waits while one is retried.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 1.0
    cap: float = 30.0
    give_up_after: float = 900.0

    @classmethod
    def from_settings(cls, settings) -> RetryPolicy:
        return cls(base=settings.webhook_backoff_seconds, cap=settings.webhook_backoff_max_seconds,
                   give_up_after=settings.webhook_retry_seconds)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 = the first)."""
        backoff = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        if retry_after is not None and retry_after > 0:
            return min(self.cap, max(backoff, retry_after))
        return backoff

    def gives_up(self, first_attempt_at: float, now: float) -> bool:
        """Whether an event first tried at ``first_attempt_at`` is dropped now (instead of tried again)."""
        return now - first_attempt_at >= self.give_up_after


def delivered(http_status: int | None) -> bool:
    """A 2xx answer: the receiver has the event."""
    return http_status is not None and 200 <= http_status < 300


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (its HTTP-date form is not read)."""
    try:
        return float(value) if value else None
    except ValueError:
        return None
