"""kopf handler logic, one module per concern; ``reel_operator.main`` wires them to kopf's decorators.

- ``create``: a new (or resumed) session -> room lock, ServiceAccount/Role/RoleBinding, recorder pod; the
  replacement pod of a lost recorder.
- ``stop``: spec.stop set -> graceful pod deletion (SIGTERM: the recorder stops and finishes uploading).
- ``pods``: recorder pod events -> failures to start, exits, final phases, lost recorders (interruptions);
  finished and lost pods removed.
- ``session_events``: every session event -> conditions, Events, the end of an interruption, cleanup at the
  end; the start-timeout timer and the interruption timer (starts the replacement).
- ``delete``: the finalizer -> stop, wait (bounded) for the upload, release the room.
"""
