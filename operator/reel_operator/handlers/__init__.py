"""kopf handler logic, one module per concern; ``reel_operator.main`` wires them to kopf's decorators.

- ``create``: a new (or resumed) session -> room lock, ServiceAccount/Role/RoleBinding, recorder pod.
- ``stop``: spec.stop set -> graceful pod deletion (SIGTERM: the recorder stops and finishes uploading).
- ``pods``: recorder pod events -> failures to start, exits, final phases; finished pods removed.
- ``session_events``: every session event -> conditions, Events, cleanup at the end; the start-timeout timer.
- ``delete``: the finalizer -> stop, wait (bounded) for the upload, release the room.
"""
