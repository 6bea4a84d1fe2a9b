"""The one vocabulary of a RecordingSession's status: phases, stop reasons, conditions and their reasons.

Every phase, stop reason, condition type and condition/Event reason Reel writes is defined here, once, and
used by the API models (the CRD's enums come from `Phase` and `StopReason`), the operator and the recorder;
nowhere else is one written as a string literal. Standard library only: the recorder imports this module after
it has dropped pydantic (`import reel_api.vocabulary` does not import the models).

Who writes what:
- the recorder reports its phase (`Starting` to the final one), the stop reasons `Requested`, `NoUsers`,
  `MaxDuration` and `Error`, and, for `Error`, the detailed `FailureReason` of its own failures (status
  `reason` and the termination log);
- the operator writes `Pending`, `Starting`, `Stopping` and every final phase the recorder cannot report (it
  could not start, it was killed while stopping, it was lost too often), the stop reasons `Deleted` and
  `AlreadyRecording`, its own `FailureReason`s, the `InterruptionReason` of a lost recorder it replaces, the
  conditions (`ConditionType`, `ConditionStatus`, `ConditionReason`) and the Events.

A failed session has phase `Failed`, stop reason `Error` (or `AlreadyRecording`) and its `FailureReason` as the
reason of the `Ready` condition and of the Warning Event. Kubernetes' own reasons (a pod's `Evicted`, a
kubelet's `OOMKilled`) are not ours: the operator translates them, or passes a pod's reason through as it is.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """The lifecycle phase of a RecordingSession (status.phase); it only moves forward, and a final phase is final,
    with one exception: `BackedUp` becomes `Completed` once the operator's backfill has copied every backup-only
    object into the primary and verified it (`status.backfill`, PHASE_AFTER_BACKFILL)."""

    PENDING = "Pending"  # accepted; the operator has not created the recorder pod yet
    STARTING = "Starting"  # the recorder pod is starting: pulling the image, joining the room
    RECORDING = "Recording"  # in the room, recording every publishing participant (or waiting for one)
    PAUSED = "Paused"  # spec.paused is true: still in the room, no media written
    STOPPING = "Stopping"  # the recording is ending: the open segments are being closed
    UPLOADING = "Uploading"  # recording ended; the last segments, playlists and the manifest are being stored
    COMPLETED = "Completed"  # ended, and everything recorded is in the primary storage
    BACKED_UP = "BackedUp"  # ended, everything is stored, some of it only in the backup storage
    FAILED = "Failed"  # ended by an error: the Ready condition's reason and status.message say what to do


#: Phases a session never leaves (but BackedUp -> Completed after a backfill: PHASE_AFTER_BACKFILL).
TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.BACKED_UP, Phase.FAILED})

#: The one move out of a final phase: (from, to) once the backfill has moved the backup into the primary.
PHASE_AFTER_BACKFILL = (Phase.BACKED_UP, Phase.COMPLETED)


class StopReason(StrEnum):
    """Why a recording stopped (status.stopReason): the coarse contract value; details are in the conditions."""

    REQUESTED = "Requested"  # spec.stop was set to true (or the recorder got SIGTERM)
    NO_USERS = "NoUsers"  # no recorded participant published for maxIdleSeconds
    MAX_DURATION = "MaxDuration"  # the recording reached maxDurationSeconds
    DELETED = "Deleted"  # the RecordingSession was deleted
    ALREADY_RECORDING = "AlreadyRecording"  # another session already records this room: nothing was done
    ERROR = "Error"  # a failure: the FailureReason is the Ready condition's reason, status.message the details


class FailureReason(StrEnum):
    """The detailed reason of a failed session: the Ready condition's reason and the Warning Event's."""

    # Reported by the recorder (status.reason, termination log).
    INVALID_SESSION = "InvalidSession"  # the session is refused: the message lists every wrong field
    JANUS_UNREACHABLE = "JanusUnreachable"  # cannot connect to spec.room.server: check the URL and Janus
    JANUS_ERROR = "JanusError"  # Janus refused a request or dropped the connection while recording
    ROOM_NOT_FOUND = "RoomNotFound"  # no room spec.room.id on that Janus: check the id or create the room
    ROOM_UNAUTHORIZED = "RoomUnauthorized"  # wrong or missing pin (or Janus token) in the room credentials
    FORWARD_UNAUTHORIZED = "ForwardUnauthorized"  # wrong or missing room secret / admin key: no RTP forwarding
    CODEC_UNSUPPORTED = "CodecUnsupported"  # a participant sends VP8/VP9/AV1: use a videocodec=h264 room
    STORAGE_FAILED = "StorageFailed"  # the store refused (credentials, bucket): the message names it
    DISK_FULL = "DiskFull"  # the recorder's spool is full: give it more disk
    INTERNAL_ERROR = "InternalError"  # a bug in the recorder: the message has the details; please report it
    INTEGRITY_MISMATCH = "IntegrityMismatch"  # a stored object differs from manifest.json: the message names it
    JANUS_LOST = "JanusLost"  # the connection to Janus was lost and not regained within reconnectSeconds

    # Decided by the operator (from the pod, the room lock, its settings).
    ALREADY_RECORDING = "AlreadyRecording"  # another session records this server + room + mode: nothing touched
    SECRET_NOT_FOUND = "SecretNotFound"  # a Secret named in the session (or a key in it) is missing: create it
    IMAGE_PULL_FAILED = "ImagePullFailed"  # the recorder image cannot be pulled: check the image and pull secrets
    CONTAINER_CONFIG_ERROR = "ContainerConfigError"  # the kubelet cannot create the recorder container
    UNSCHEDULABLE = "Unschedulable"  # no node can run the recorder pod (resources, selectors, taints)
    START_TIMEOUT = "StartTimeout"  # the recorder pod did not start within the operator's start timeout
    POD_FAILED = "PodFailed"  # the pod failed before its recorder started (or Kubernetes' own reason, e.g. OutOfcpu)
    RECORDER_POD_DELETED = "RecorderPodDeleted"  # the recorder pod was deleted while recording (before maxRestarts)
    OUT_OF_MEMORY = "OutOfMemory"  # the recorder was OOM-killed while stopping: raise its memory limit
    UPLOAD_TIMEOUT = "UploadTimeout"  # killed while stopping, before its upload ended: raise the grace period
    RECORDER_ERROR = "RecorderError"  # exited with an error and no report while stopping: see message (log tail)
    START_FAILED = "StartFailed"  # the operator could not create the recorder pod after several attempts
    INVALID_RECORDER_SETTINGS = "InvalidRecorderSettings"  # e.g. a bad reel.dev/recorder-resources annotation
    TOO_MANY_RESTARTS = "TooManyRestarts"  # the recorder was lost more often than spec.recording.maxRestarts allows
    BACKFILL_TIMEOUT = "BackfillTimeout"  # BackedUp: the backfill did not finish in backfillTimeoutSeconds; backup kept
    BACKFILL_FAILED = "BackfillFailed"  # BackedUp: the backfill cannot run (e.g. a local store without a volume claim)
    ENDPOINT_NOT_ALLOWED = "EndpointNotAllowed"  # room server or store endpoint is (resolves to) a denied address
    CREDENTIALS_REQUIRED = "CredentialsRequired"  # an S3 store without credentialsSecretRef; ambient ones not allowed


class ConditionType(StrEnum):
    """The condition types Reel sets (the field itself accepts any valid condition type)."""

    RECORDING = "Recording"  # True while the recorder is in the room recording (not paused)
    UPLOADED = "Uploaded"  # True when everything recorded is stored
    BACKED_UP = "BackedUp"  # True when some segments went to the backup storage
    DISK_FULL = "DiskFull"  # True while the recorder's spool is full: new media is not recorded (also a Warning Event)
    DEGRADED = "Degraded"  # True when someone in the room is not (fully) recorded: status.participants[].skipped
    READY = "Ready"  # the summary: True while recording or after a good end; reason = phase or FailureReason
    RECONCILING = "Reconciling"  # kstatus: True while Reel works toward a steady state (start, gap, end, backfill)
    STALLED = "Stalled"  # kstatus: True when it cannot go on without a person: Failed, or a backfill that gave up
    FINISHED = "Finished"  # True in a final phase (reason: Completed, BackedUp or Failed): `kubectl wait` for the end


class ConditionStatus(StrEnum):
    """The status of a condition (Kubernetes API conventions)."""

    TRUE = "True"  # the condition holds
    FALSE = "False"  # the condition does not hold
    UNKNOWN = "Unknown"  # cannot be told (yet)


class ConditionReason(StrEnum):
    """Reasons of conditions and Events that are neither a phase, a stop reason nor a FailureReason."""

    PARTICIPANTS_PRESENT = "ParticipantsPresent"  # Recording True: at least one participant is being recorded
    WAITING_FOR_PARTICIPANTS = "WaitingForParticipants"  # Recording True: in the room, nobody publishes yet
    STARTING = "Starting"  # Recording False: the recorder is starting (phase Pending or Starting)
    PAUSED = "Paused"  # Recording False: spec.paused is true
    STOPPED = "Stopped"  # Recording False: the recording ended (when no stop reason is known)
    ALL_STORED = "AllStored"  # Uploaded True: every recorded segment is stored
    UPLOADING = "Uploading"  # Uploaded False: segments are uploaded while recording (see status.upload)
    NOTHING_RECORDED = "NothingRecorded"  # Uploaded False: no segment has been recorded yet
    BACKUP_USED = "BackupUsed"  # BackedUp True: the primary storage failed, some segments are in the backup
    NOT_NEEDED = "NotNeeded"  # BackedUp False: the primary storage took everything
    STOPPED_BEFORE_START = "StoppedBeforeStart"  # stopped or deleted before the recorder started: nothing recorded
    RECORDER_GONE = "RecorderGone"  # the pod went while stopping, before the recorder reported its result
    DELETE_TIMEOUT = "DeleteTimeout"  # Warning Event: after deletion the recorder did not finish in time; killed
    INTERRUPTED = "Interrupted"  # Recording and Ready False, Warning Event: the recorder was lost, a new one resumes
    RESUMED = "Resumed"  # Normal Event: the replacement recorder reported; the recording goes on
    SPOOL_FULL = "SpoolFull"  # DiskFull True: the stores lag, unstored segments fill the spool; new media is dropped
    PARTICIPANT_SKIPPED = "ParticipantSkipped"  # Degraded True, Warning Event: a participant (a stream) not recorded
    ALL_RECORDED = "AllRecorded"  # Degraded False: everyone publishing is recorded
    RECONNECTED = "Reconnected"  # Normal Event: the recorder is back in the room after losing its Janus connection
    SPOOL_AVAILABLE = "SpoolAvailable"  # DiskFull False: the spool has room (Normal Event: uploads drained it)
    BACKFILLING = "Backfilling"  # BackedUp True, Normal Event: a Job copies the backup-only objects into the primary
    BACKUP_MOVED = "BackupMoved"  # BackedUp True once Completed: the backfill moved the backup into the primary
    APPLYING_SPEC = "ApplyingSpec"  # Reconciling True: the recorder has not applied the latest spec edit yet
    WEBHOOK_FAILING = "WebhookFailing"  # Warning Event: spec.notify.webhook refused an event; it is sent again later
    WEBHOOK_DROPPED = "WebhookDropped"  # Warning Event: an event could not be delivered within the retry bound


class SkipReason(StrEnum):
    """Why a participant's stream is not recorded (status.participants[].skipped[].reason, the manifest's):
    the others are recorded all the same; the session is Degraded (Failed/CodecUnsupported only when nobody
    can be recorded)."""

    CODEC_UNSUPPORTED = "CodecUnsupported"  # e.g. VP8 video for an individual HLS recording: a videocodec=h264 room
    FORWARD_FAILED = "ForwardFailed"  # Janus did not set up the forwarding of their media (message: its answer)
    NO_MEDIA = "NoMedia"  # forwarded, but no packet came (also after forwarding again and a keyframe request)
    CONNECT_FAILED = "ConnectFailed"  # ingest webrtc: ICE/DTLS from Janus did not connect in time (message: the states)


class RoomState(StrEnum):
    """The recorder's connection to the room (status.room.state): a lost connection is regained with backoff,
    for up to spec.recording.reconnectSeconds (then the session fails with FailureReason.JANUS_LOST)."""

    CONNECTED = "Connected"  # joined: presence is followed, every recorded participant's media is forwarded
    RECONNECTING = "Reconnecting"  # the connection to Janus was lost: nothing is recorded until it is regained


class InterruptionReason(StrEnum):
    """Why a recorder was lost while its session was not stopped (status.interruption.reason, REEL_RESUME's
    reason): the operator starts a replacement that continues the same recording (spec.recording.maxRestarts)."""

    POD_DELETED = "PodDeleted"  # the recorder pod was deleted (kubectl delete pod, a force delete) mid-recording
    EVICTED = "Evicted"  # the pod was evicted: a node drain, the eviction API, node pressure, a NoExecute taint
    PREEMPTED = "Preempted"  # the scheduler preempted the pod for a pod of higher priority
    OUT_OF_MEMORY = "OutOfMemory"  # the recorder was OOM-killed: if it recurs, raise its memory limit
    NODE_LOST = "NodeLost"  # the pod's node went away or stopped responding
    TERMINATED = "Terminated"  # the recorder got SIGTERM from something else than its session (e.g. node shutdown)
    RECORDER_CRASHED = "RecorderCrashed"  # the recorder exited with an error, or was killed, without a final report
    RECORDER_SILENT = "RecorderSilent"  # the recorder reported nothing for spec.recording.recorderSilenceSeconds
    RECORDER_UNRESPONSIVE = "RecorderUnresponsive"  # the kubelet stopped it: liveness probe failed (loop wedged)
    RECORDER_LOST = "RecorderLost"  # a replacement was started without a cause (the recorder cannot tell)
    RESUMED_BY_HAND = "ResumedByHand"  # reel-recorder --resume PREFIX: a person continued the recording


class WebhookEvent(StrEnum):
    """The ``type`` of a webhook event (spec.notify.webhook; README "Webhooks"): one per thing the application
    may want to act on, derived by the operator from the session's status."""

    STARTED = "recording.started"  # the recorder is in the room, recording (phase Recording for the first time)
    PARTICIPANT_JOINED = "participant.joined"  # a participant's recording began (again, after leaving)
    PARTICIPANT_LEFT = "participant.left"  # a participant left or stopped publishing
    PARTICIPANT_SKIPPED = "participant.skipped"  # a stream of a participant cannot be recorded (reason, what to do)
    UPLOAD_PROGRESS = "upload.progress"  # status.upload while recording, at most about once a minute
    PAUSED = "recording.paused"  # spec.paused took effect: no media is written
    UNPAUSED = "recording.unpaused"  # recording again after a pause
    INTERRUPTED = "recording.interrupted"  # a gap began: the recorder was lost, or it lost its Janus connection
    RESUMED = "recording.resumed"  # the gap ended: the replacement recorder (or the room connection) is back
    STOPPED = "recording.stopped"  # the recording ended (stopReason); what follows is its storing
    UPLOADED = "recording.uploaded"  # everything recorded is in the primary storage (manifest, playlists)
    BACKED_UP = "recording.backedUp"  # everything is stored, some of it only in the backup storage
    COMPLETED = "recording.completed"  # final: phase Completed (also after a BackedUp session's backfill)
    FAILED = "recording.failed"  # final: phase Failed, with the FailureReason and the message


__all__ = [
    "PHASE_AFTER_BACKFILL",
    "TERMINAL_PHASES",
    "ConditionReason",
    "ConditionStatus",
    "ConditionType",
    "FailureReason",
    "InterruptionReason",
    "Phase",
    "RoomState",
    "SkipReason",
    "StopReason",
    "WebhookEvent",
]
