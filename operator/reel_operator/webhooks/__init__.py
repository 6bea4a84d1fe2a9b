"""Webhooks (spec.notify.webhook): the session's events, told to the application that started the recording.

Why the operator sends them, not the recorder: the operator sees every status change the recorder writes
(participants, phase, uploads, conditions) through its watch, and also what no recorder can report: a pod that
never started, a recorder lost and replaced, a backfill that ended. A recorder pod exists only while it records.

- ``events.py`` (pure): the status of a session -> the events not told yet (``derive``), and their envelope;
- ``signing.py`` (pure): the Standard Webhooks signature (``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature: v1,<base64 HMAC-SHA256>``) and its check;
- ``retry.py`` (pure): when to try again, when to give up;
- ``journal.py``: what survives an operator restart (the annotation ``reel.dev/webhook``: next sequence number,
  what was told, events not delivered yet);
- ``delivery.py``: per-session ordered queues and the worker threads that POST them; kopf's handlers only
  enqueue and never wait for a receiver.
"""
