"""The RecordingSession API (reel.dev/v1alpha1) as pydantic models: the single source of truth.

The CRD (`crd.py`) is generated from these models, and the same rules run in Python (`load_session`), so a
manifest the apiserver refuses is refused here with the same message, and the other way round.

Python attributes are snake_case; the Kubernetes (YAML/JSON) names are camelCase aliases. Both are accepted
on input (`populate_by_name`); `RecordingSession.to_dict()` gives the Kubernetes form.

Spec types are strict (a string "4" is not an integer, as for the apiserver); status types are lax and ignore
unknown fields, since controllers write them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from .rules import Rule, cel_matches, re2_search
from .vocabulary import (
    PHASE_AFTER_BACKFILL,
    TERMINAL_PHASES,
    ConditionStatus,
    ConditionType,
    FailureReason,
    InterruptionReason,
    Phase,
    RoomState,
    SkipReason,
    StopReason,
)

GROUP = "reel.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "RecordingSession"
PLURAL = "recordingsessions"
SINGULAR = "recordingsession"
SHORT_NAMES = ("recs",)
CATEGORIES = ("reel",)
CRD_NAME = f"{PLURAL}.{GROUP}"

DEFAULT_DISPLAY_NAME = "reel-recorder"
DEFAULT_PREFIX = "{date}/{room}_{time}_{recordingId}/"
DEFAULT_REGION = "us-east-1"
DEFAULT_MAX_RESTARTS = 3
DEFAULT_RECORDER_SILENCE_SECONDS = 60
DEFAULT_RECONNECT_SECONDS = 60
DEFAULT_BACKFILL_TIMEOUT_SECONDS = 3600

# ---------------------------------------------------------------------------------------------------------
# Patterns (RE2 subset, anchored; see rules.py) and the rules built on them
# ---------------------------------------------------------------------------------------------------------

_HOST = r"([A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?"
WS_URL_PATTERN = rf"^wss?://{_HOST}(/[!-~]*)?$"
HTTP_URL_PATTERN = rf"^https?://{_HOST}(/[!-~]*)?$"
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
IPV4_PATTERN = r"^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$"
DOTDOT_SEGMENT_PATTERN = r"(^|/)[.][.](/|$)"
# Kubernetes object names (RFC 1123 subdomain), as Secrets need.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Keys of a Secret's data (as Kubernetes allows them).
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
# metav1.Condition
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

SERVER_URL = Rule(
    rule=cel_matches(WS_URL_PATTERN),
    message="server must be a ws:// or wss:// URL, e.g. ws://janus.media.svc:8188",
    check=lambda v: re2_search(WS_URL_PATTERN, v),
)
ROOM_ID = Rule(
    rule="type(self) == string ? (size(self) >= 1 && size(self) <= 128) : self >= 1",
    message="id must be a positive integer or a non-empty string of at most 128 characters",
    check=lambda v: (1 <= len(v) <= 128) if isinstance(v, str) else v >= 1,
)
ENDPOINT_URL = Rule(
    rule=cel_matches(HTTP_URL_PATTERN),
    message="endpoint must be an http:// or https:// URL, e.g. http://minio.media.svc:9000",
    check=lambda v: re2_search(HTTP_URL_PATTERN, v),
)
WEBHOOK_URL = Rule(
    rule=cel_matches(HTTP_URL_PATTERN),
    message="url must be an http:// or https:// URL, e.g. https://app.example.com/hooks/reel",
    check=lambda v: re2_search(HTTP_URL_PATTERN, v),
)
BUCKET_NAME = Rule(
    rule=(f"{cel_matches(BUCKET_PATTERN)} && !self.contains('..') && !{cel_matches(IPV4_PATTERN)}"),
    message=(
        "bucket must be a valid S3 bucket name: 3-63 lowercase letters, digits, '.' and '-', starting and "
        "ending with a letter or digit, without '..', not an IP address"
    ),
    check=lambda v: re2_search(BUCKET_PATTERN, v) and ".." not in v and not re2_search(IPV4_PATTERN, v),
)
PREFIX_RELATIVE = Rule(
    rule="!self.startsWith('/')",
    message="prefix must not start with '/'",
    check=lambda v: not v.startswith("/"),
)
PREFIX_NO_DOTDOT = Rule(
    rule=f"!{cel_matches(DOTDOT_SEGMENT_PATTERN)}",
    message="prefix must not contain a '..' path segment",
    check=lambda v: not re2_search(DOTDOT_SEGMENT_PATTERN, v),
)
#: The placeholders of spec.storage.prefix (the recorder's layout.render_prefix fills them; a test checks both agree).
PREFIX_PLACEHOLDERS = ("date", "time", "room", "recordingId", "session", "namespace")
PREFIX_PLACEHOLDERS_PATTERN = r"^([^{}]|\{(" + "|".join(PREFIX_PLACEHOLDERS) + r")\})*$"
PREFIX_KNOWN_PLACEHOLDERS = Rule(
    rule=cel_matches(PREFIX_PLACEHOLDERS_PATTERN),
    message="prefix may only use the placeholders " + ", ".join("{" + p + "}" for p in PREFIX_PLACEHOLDERS)
    + " (no other braces)",
    check=lambda v: re2_search(PREFIX_PLACEHOLDERS_PATTERN, v),
)
PREFIX_NO_EMPTY_SEGMENT = Rule(
    rule="!self.contains('//')",
    message="prefix must not contain an empty path segment ('//')",
    check=lambda v: "//" not in v,
)
LOCAL_PATH_ABSOLUTE = Rule(
    rule="self.startsWith('/')",
    message="path must be an absolute path (start with '/')",
    check=lambda v: v.startswith("/"),
)
LOCAL_PATH_NO_DOTDOT = Rule(
    rule=f"!{cel_matches(DOTDOT_SEGMENT_PATTERN)}",
    message="path must not contain a '..' path segment",
    check=lambda v: not re2_search(DOTDOT_SEGMENT_PATTERN, v),
)
SUBSCRIBE_XOR_UNSUBSCRIBE = Rule(
    rule=(
        "!(has(self.subscribe) && size(self.subscribe) > 0 && "
        "has(self.unsubscribe) && size(self.unsubscribe) > 0)"
    ),
    message=(
        "subscribe and unsubscribe cannot both be set: list either the participants to record or the ones "
        "to leave out"
    ),
    check=lambda r: not (r.subscribe and r.unsubscribe),
)
BUCKET_XOR_LOCAL = Rule(
    rule="has(self.bucket) != has(self.local)",
    message="exactly one of bucket (S3) or local (a directory) must be set",
    check=lambda s: (s.bucket is None) != (s.local is None),
)
ROOM_IMMUTABLE = Rule(
    rule="self == oldSelf",
    message="room is immutable: create a new RecordingSession to record another room",
    check_transition=lambda old, new: old == new,
)
STORAGE_IMMUTABLE = Rule(
    rule="self == oldSelf",
    message="storage is immutable: create a new RecordingSession to record elsewhere",
    check_transition=lambda old, new: old == new,
)


def fixed(name: str) -> Rule:
    """`name` cannot change once the session exists: the recorder is set up with it when the recording starts, and a
    replacement recorder (spec.recording.maxRestarts) continues the same recording with it."""
    return Rule(rule="self == oldSelf",
                message=f"{name} is immutable: the recording is set up with it when it starts; create a new "
                "RecordingSession to record differently",
                check_transition=lambda old, new: old == new)


BACKUP_STORAGE_IMMUTABLE = Rule(
    rule="has(self.backupStorage) == has(oldSelf.backupStorage) && "
         "(!has(self.backupStorage) || self.backupStorage == oldSelf.backupStorage)",
    message="backupStorage is immutable (it cannot be added or removed either): the recorder opens its stores when "
            "it starts; create a new RecordingSession to record elsewhere",
    check_transition=lambda old, new: old.backup_storage == new.backup_storage,
)
OUTPUTS_HAVE_HLS = Rule(
    rule="self.exists(o, o == 'hls')",
    message="outputs must include hls: the HLS segments are what is uploaded while recording (mp4 comes in addition)",
    check=lambda value: Output.HLS in value,
)
EVEN = Rule(
    rule="self % 2 == 0",
    message="must be even: H.264 in 4:2:0 needs even picture sizes",
    check=lambda v: v % 2 == 0,
)
COLOUR_PATTERN = r"^#[0-9a-fA-F]{6}$"
COLOUR = Rule(
    rule=cel_matches(COLOUR_PATTERN),
    message='must be a colour written "#RRGGBB", e.g. "#000000" for black',
    check=lambda v: re2_search(COLOUR_PATTERN, v),
)
BITRATE = Rule(
    rule="self == 0 || self >= 100",
    message="videoBitrate must be 0 (automatic) or 100 to 20000 kbit/s",
    check=lambda v: v == 0 or v >= 100,
)
_FINAL = "[" + ", ".join(f"'{p.value}'" for p in sorted(TERMINAL_PHASES)) + "]"
PHASE_IS_FINAL = Rule(
    rule=f"!(oldSelf in {_FINAL}) || self == oldSelf || "
         f"(oldSelf == '{PHASE_AFTER_BACKFILL[0].value}' && self == '{PHASE_AFTER_BACKFILL[1].value}')",
    message=f"a final phase ({', '.join(sorted(TERMINAL_PHASES))}) is final; the one move out of one is "
            f"{PHASE_AFTER_BACKFILL[0].value} to {PHASE_AFTER_BACKFILL[1].value}, once the backfill has stored "
            "everything in the primary",
    check_transition=lambda old, new: old not in TERMINAL_PHASES or new == old or (old, new) == PHASE_AFTER_BACKFILL,
)
OPUS_NEEDS_FMP4 = Rule(
    rule="!(has(self.audioCodec) && self.audioCodec == 'opus' && (!has(self.segmentFormat) || "
         "self.segmentFormat == 'ts'))",
    message="audioCodec opus needs segmentFormat fmp4: browsers (hls.js, Safari) do not play Opus in MPEG-TS "
            "segments; use segmentFormat: fmp4, or audioCodec aac",
    check=lambda r: not (r.audio_codec == AudioCodec.OPUS and r.segment_format == SegmentFormat.TS),
)
AUDIO_CODEC_IMMUTABLE = Rule(
    rule="has(self.audioCodec) == has(oldSelf.audioCodec) && "
         "(!has(self.audioCodec) || self.audioCodec == oldSelf.audioCodec)",
    message="audioCodec is immutable (it cannot be added or removed either): the recording is set up with it when "
            "it starts; create a new RecordingSession to record differently",
    check_transition=lambda old, new: old.audio_codec == new.audio_codec,
)
STOP_IS_FINAL = Rule(
    rule="self || !oldSelf",
    message="stop cannot go back from true to false: create a new RecordingSession to record again",
    check_transition=lambda old, new: new or not old,
)


def _unique(value: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    for item in value:
        if item in seen:
            shown = item.value if isinstance(item, StrEnum) else item
            raise PydanticCustomError("duplicate_value", 'Duplicate value: "{value}"', {"value": shown})
        seen.add(item)
    return value


def _listed(values: type[StrEnum], last: str = "or") -> str:
    """The values of an enum as prose for a description: "A, B or C"."""
    names = [v.value for v in values]
    return f"{', '.join(names[:-1])} {last} {names[-1]}"


def _int_or_string(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError("int_or_string_type", "must be an integer or a string")
    return value


#: A participant id or display name in subscribe/unsubscribe.
ParticipantRef = Annotated[StrictStr, Field(min_length=1, max_length=256)]
IceServerUrl = Annotated[StrictStr, Field(min_length=6, max_length=512, pattern=r"^(stun|turns?):[!-~]+$")]

#: An integer or a string, as Kubernetes' IntOrString (`x-kubernetes-int-or-string`).
IntOrString = Annotated[
    int | str, BeforeValidator(_int_or_string), WithJsonSchema({"x-kubernetes-int-or-string": True})
]

# ---------------------------------------------------------------------------------------------------------
# Enums
# ---------------------------------------------------------------------------------------------------------


class Ingest(StrEnum):
    """How media gets from Janus to the recorder."""

    FORWARD = "forward"
    WEBRTC = "webrtc"
    AUTO = "auto"


class Mode(StrEnum):
    """What is recorded."""

    INDIVIDUAL = "individual"
    COMPOSITE = "composite"
    BOTH = "both"


class CompositeLayout(StrEnum):
    """How the composite places the participants."""

    GRID = "grid"
    SPEAKER = "speaker"


class StreamTypes(StrEnum):
    """Which media of each participant is recorded."""

    AUDIO = "audio"
    VIDEO = "video"
    AUDIO_VIDEO = "audioVideo"


class Output(StrEnum):
    """A recording output."""

    HLS = "hls"
    MP4 = "mp4"


class SegmentFormat(StrEnum):
    """The HLS segment container."""

    TS = "ts"
    FMP4 = "fmp4"


class AudioCodec(StrEnum):
    """The audio codec of the HLS segments."""

    AAC = "aac"
    OPUS = "opus"


class ServerSideEncryption(StrEnum):
    """S3 server-side encryption."""

    NONE = ""
    AES256 = "AES256"
    AWS_KMS = "aws:kms"


# Phase, StopReason, ConditionType and ConditionStatus are the vocabulary's (vocabulary.py), re-exported here.


class StorageLocation(StrEnum):
    """Where the stored segments are."""

    PRIMARY = "primary"
    BACKUP = "backup"
    MIXED = "mixed"


# ---------------------------------------------------------------------------------------------------------
# Base classes
# ---------------------------------------------------------------------------------------------------------


class ApiModel(BaseModel):
    """Base of the spec models: camelCase aliases, strict about unknown fields, object-level `reel_rules`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    #: Rules on the object as a whole (x-kubernetes-validations on the object's schema).
    reel_rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def check_reel_rules(self) -> Any:
        for rule in type(self).reel_rules:
            if rule.check is not None and not rule.check(self):
                raise rule.error()
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> Any:
        json_schema = handler(schema)
        if cls.reel_rules:
            target = handler.resolve_ref_schema(json_schema)
            target["x-kubernetes-validations"] = [rule.to_cel() for rule in cls.reel_rules]
        return json_schema


class StatusModel(BaseModel):
    """Base of the status models: camelCase aliases, lax types, unknown fields ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


# ---------------------------------------------------------------------------------------------------------
# Spec
# ---------------------------------------------------------------------------------------------------------


class SecretRef(ApiModel):
    """A Secret in the session's namespace."""

    name: StrictStr = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of the Secret, in the namespace of the RecordingSession.",
    )


class SecretKeyRef(ApiModel):
    """One key of a Secret in the session's namespace."""

    name: StrictStr = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of the Secret, in the namespace of the RecordingSession.",
    )
    key: StrictStr = Field(
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY_PATTERN,
        description="The key in the Secret's data.",
    )


class Webhook(ApiModel):
    """Where the operator sends the session's events (README "Webhooks"): JSON POSTs signed the Standard Webhooks
    way (headers webhook-id, webhook-timestamp, webhook-signature: HMAC-SHA256 with the Secret key)."""

    url: Annotated[StrictStr, Field(max_length=2048), WEBHOOK_URL] = Field(
        description="http:// or https:// URL that receives the events (POST, JSON); subject to the same allow "
        "rules as the other endpoints of a session.",
    )
    secret_ref: SecretKeyRef = Field(
        description="The Secret key holding the signing key (any bytes; a value starting with whsec_ is read as "
        "base64 after the prefix, as Standard Webhooks libraries expect).",
    )


class Notify(ApiModel):
    """Who is told what happens to the recording."""

    webhook: Webhook | None = Field(
        default=None,
        description="Send every event of the session (started, participants, upload progress, pauses, gaps, the "
        "end and its outcome) to this URL, in order, retried with backoff; a failing receiver never affects "
        "the recording.",
    )


class Room(ApiModel):
    """The Janus VideoRoom room to record (the "channel")."""

    server: Annotated[StrictStr, Field(max_length=2048), SERVER_URL] = Field(
        description="Janus WebSocket API URL (ws:// or wss://), e.g. ws://janus.media.svc:8188.",
    )
    id: Annotated[IntOrString, ROOM_ID] = Field(
        description="VideoRoom room id: a positive number, or a string of 1-128 characters for Janus "
        "configured with string room ids.",
    )
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description="Optional Secret with the room's credentials. Keys used when present: pin (to join), "
        "secret (the room secret), adminKey (to forward media), token (Janus API token), turnUsername and "
        "turnCredential (for the TURN servers of iceServers).",
    )
    # No default (None, not []): a session stored under the previous CRD keeps its spec as it was when the CRD is
    # upgraded (a schema default would add the field to every stored object: test_chart_upgrade).
    ice_servers: Annotated[list[IceServerUrl], AfterValidator(_unique)] | None = Field(
        default=None,
        max_length=8,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="ingest webrtc: STUN/TURN servers the recorder may use (stun:, turn: or turns: URLs); a TURN "
        "server's username and credential come from the keys turnUsername and turnCredential of the room "
        "credentials Secret. Empty (the default): host candidates only.",
    )
    display_name: StrictStr = Field(
        default=DEFAULT_DISPLAY_NAME,
        min_length=1,
        max_length=128,
        description="The recorder's own participant name in the room.",
    )


class Composite(ApiModel):
    """The composite recording: the whole meeting as one picture and one mixed sound (mode composite or both)."""

    width: Annotated[StrictInt, EVEN] = Field(default=1280, ge=160, le=1920,
                                              description="Picture width in pixels (even, 160 to 1920).")
    height: Annotated[StrictInt, EVEN] = Field(default=720, ge=120, le=1080,
                                               description="Picture height in pixels (even, 120 to 1080).")
    fps: StrictInt = Field(default=15, ge=1, le=30, description="Frames per second (1 to 30).")
    video_bitrate: Annotated[StrictInt, BITRATE] = Field(
        default=0,
        ge=0,
        le=20_000,
        description="H.264 bitrate in kbit/s (100 to 20000); 0 chooses one from the size and frame rate "
        "(about 0.1 bit per pixel: ~460 kbit/s at 640x480@15, ~1400 kbit/s at 1280x720@15).",
    )
    layout: CompositeLayout = Field(
        default=CompositeLayout.GRID,
        description="grid: equal tiles in join order (1 fills the picture, 2 side by side, 3-4 as 2x2, up to 16); "
        "speaker: whoever was loudest in the last seconds large, the others in a strip.",
    )
    background: Annotated[StrictStr, COLOUR] = Field(default="#000000", max_length=7,
                                                     description='Background colour, "#RRGGBB".')
    show_names: StrictBool = Field(default=True, description="Draw each participant's display name on their tile.")


class Recording(ApiModel):
    """What to record and how."""

    reel_rules = (SUBSCRIBE_XOR_UNSUBSCRIBE, OPUS_NEEDS_FMP4, AUDIO_CODEC_IMMUTABLE)

    ingest: Annotated[Ingest, fixed("ingest")] = Field(
        default=Ingest.AUTO,
        description="How media reaches the recorder: forward (Janus RTP forwarding; needs the room secret or "
        "admin key), webrtc (the recorder subscribes to each participant like any client; needs only what joining "
        "needs) or auto (forward when the room credentials hold a secret or adminKey, else webrtc).",
    )
    mode: Annotated[Mode, fixed("mode")] = Field(
        default=Mode.INDIVIDUAL,
        description="individual: one HLS stream per participant; composite: one HLS stream of the whole meeting "
        "(every participant's video in one picture, their audio mixed; records VP8 rooms too); both: each "
        "participant's and the composite, from one join.",
    )
    composite: Annotated[Composite, fixed("composite")] = Field(
        default_factory=Composite,
        json_schema_extra={"default": {}},
        description="The composite's picture and sound (mode composite or both).",
    )
    stream_types: Annotated[StreamTypes, fixed("streamTypes")] = Field(
        default=StreamTypes.AUDIO_VIDEO,
        description="Which media of each participant to record: audio, video or audioVideo.",
    )
    subscribe: Annotated[list[ParticipantRef], AfterValidator(_unique), fixed("subscribe")] = Field(
        default_factory=list,
        max_length=256,
        json_schema_extra={"default": [], "x-kubernetes-list-type": "set"},
        description="Record only these participants (participant ids or display names); empty records "
        "everyone. Not together with unsubscribe.",
    )
    unsubscribe: Annotated[list[ParticipantRef], AfterValidator(_unique), fixed("unsubscribe")] = Field(
        default_factory=list,
        max_length=256,
        json_schema_extra={"default": [], "x-kubernetes-list-type": "set"},
        description="Record everyone except these participants (participant ids or display names). Not "
        "together with subscribe.",
    )
    max_idle_seconds: StrictInt = Field(
        default=30,
        ge=5,
        le=2_592_000,
        description=f"Stop (reason {StopReason.NO_USERS}) when the room has had no publisher for this many seconds "
        "(5 to 2592000).",
    )
    max_duration_seconds: StrictInt = Field(
        default=0,
        ge=0,
        description=f"Stop (reason {StopReason.MAX_DURATION}) after this many seconds of recording; 0 means unlimited.",
    )
    segment_seconds: Annotated[StrictInt, fixed("segmentSeconds")] = Field(
        default=4,
        ge=1,
        le=30,
        description="Target HLS segment duration in seconds (1 to 30).",
    )
    outputs: Annotated[list[Output], AfterValidator(_unique), OUTPUTS_HAVE_HLS, fixed("outputs")] = Field(
        default_factory=lambda: [Output.HLS],
        min_length=1,
        max_length=4,
        json_schema_extra={"default": ["hls"], "x-kubernetes-list-type": "set"},
        description="Outputs to produce: hls (always: TS segments and an M3U8 playlist per participant, uploaded "
        "while recording), and mp4 (in addition: one MP4 file per participant with the same H.264 and AAC, "
        "written while recording and uploaded when the recording ends; pauses and rejoins are gaps in it).",
    )
    segment_format: Annotated[SegmentFormat, fixed("segmentFormat")] = Field(
        default=SegmentFormat.TS,
        description="HLS segment format: ts (MPEG-TS: H.264 video as sent, AAC audio) or fmp4 (CMAF fragmented MP4 "
        "segments with an init segment per run, #EXT-X-MAP, playlist version 7: H.264, VP9 or AV1 as sent, audio "
        "as audioCodec says). VP9 and AV1 video is recorded in fmp4 only (in ts it is skipped: CodecUnsupported).",
    )
    audio_codec: AudioCodec | None = Field(
        default=None,
        description="Audio codec of the HLS segments: opus (the participants' Opus as sent, not re-encoded: "
        "segmentFormat fmp4 only) or aac (Opus re-encoded as AAC). Default: aac for ts, opus for fmp4. The MP4 "
        "output has the same audio; the composite's audio is always AAC (it is mixed, so encoded anyway). "
        "Immutable.",
    )
    max_restarts: StrictInt = Field(
        default=DEFAULT_MAX_RESTARTS,
        ge=0,
        le=20,
        description="How many times a lost recorder (its pod deleted, evicted or OOM-killed, its node gone, a crash) "
        "is replaced by a new one that continues the same recording (0 to 20); one more loss ends the session "
        f"{Phase.FAILED} with reason {FailureReason.TOO_MANY_RESTARTS}. 0: never replace.",
    )
    recorder_silence_seconds: StrictInt = Field(
        default=DEFAULT_RECORDER_SILENCE_SECONDS,
        ge=15,
        le=3600,
        description="A recording recorder reports at least every 10 s (status.heartbeatAt); one silent this long "
        "(15 to 3600 s: hung, frozen, cut off from the API server) is treated as lost: its pod is deleted and a "
        f"new recorder continues the recording ({InterruptionReason.RECORDER_SILENT}; spec.recording.maxRestarts).",
    )
    reconnect_seconds: Annotated[StrictInt, fixed("reconnectSeconds")] = Field(
        default=DEFAULT_RECONNECT_SECONDS,
        ge=0,
        le=3600,
        description="When the connection to Janus drops (or Janus restarts), the recorder reconnects with backoff, "
        "rejoins the room and forwards every participant again (each playlist continues after an "
        "#EXT-X-DISCONTINUITY; status.room shows the gap); after this many seconds without success (0 to 3600; 0: "
        f"at once) the session ends {Phase.FAILED} with reason {FailureReason.JANUS_LOST}.",
    )


class LocalStorage(ApiModel):
    """A directory instead of S3 (the demo, tests, users without S3)."""

    path: Annotated[
        StrictStr, Field(min_length=1, max_length=4096), LOCAL_PATH_ABSOLUTE, LOCAL_PATH_NO_DOTDOT
    ] = Field(description="Absolute path of the directory the recordings go to.")


class Storage(ApiModel):
    """Where the recordings go: an S3 bucket (bucket, with endpoint, region, ...) or a directory (local)."""

    reel_rules = (BUCKET_XOR_LOCAL,)

    endpoint: Annotated[StrictStr, Field(max_length=2048), ENDPOINT_URL] | None = Field(
        default=None,
        description="S3 endpoint URL (http:// or https://), e.g. http://minio.media.svc:9000; "
        "omit for AWS S3.",
    )
    region: StrictStr = Field(
        default=DEFAULT_REGION,
        min_length=1,
        max_length=64,
        description="S3 region.",
    )
    bucket: Annotated[StrictStr, Field(max_length=63), BUCKET_NAME] | None = Field(
        default=None,
        description="S3 bucket name. Exactly one of bucket and local is set.",
    )
    prefix: Annotated[StrictStr, Field(max_length=512), PREFIX_RELATIVE, PREFIX_NO_DOTDOT, PREFIX_KNOWN_PLACEHOLDERS,
                      PREFIX_NO_EMPTY_SEGMENT] = Field(
        default=DEFAULT_PREFIX,
        description="Object key prefix of a recording. Placeholders: {date}, {time}, {room}, {recordingId}. "
        "Must not start with '/' nor contain a '..' segment.",
    )
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description="Optional Secret with the S3 credentials (keys AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY); "
        "without it the recorder uses its environment (e.g. a service account's web identity).",
    )
    server_side_encryption: ServerSideEncryption = Field(
        default=ServerSideEncryption.NONE,
        description='S3 server-side encryption: "" (none), AES256 or aws:kms.',
    )
    local: LocalStorage | None = Field(
        default=None,
        description="A directory instead of S3. Exactly one of bucket and local is set.",
    )


class BackupStorage(Storage):
    """The second store (same shape as storage), used while the primary fails; what it holds at the end is moved
    into the primary by the operator's backfill Job."""

    keep: StrictBool = Field(
        default=False,
        description="true keeps the backup copies after the backfill has copied them into the primary storage and "
        "verified them (default: they are deleted).",
    )
    backfill_timeout_seconds: StrictInt = Field(
        default=DEFAULT_BACKFILL_TIMEOUT_SECONDS,
        ge=60,
        le=604800,
        description=f"A session that ends {Phase.BACKED_UP} is backfilled by a Job that copies what is only in the "
        "backup into the primary storage, retrying with backoff, then becomes "
        f"{Phase.COMPLETED}; after this many seconds (60 s to 7 days) the operator gives up "
        f"({FailureReason.BACKFILL_TIMEOUT}), leaving the backup intact.",
    )


class RecordingSessionSpec(ApiModel):
    """The desired recording."""

    reel_rules = (BACKUP_STORAGE_IMMUTABLE,)

    room: Annotated[Room, ROOM_IMMUTABLE] = Field(
        description="The Janus VideoRoom room to record; immutable."
    )
    recording: Recording = Field(
        default_factory=Recording,
        json_schema_extra={"default": {}},
        description="What to record and how.",
    )
    storage: Annotated[Storage, STORAGE_IMMUTABLE] = Field(
        description="Where the recording goes: an S3 bucket or a local directory; immutable.",
    )
    backup_storage: BackupStorage | None = Field(
        default=None,
        description="Optional second storage (same shape as storage), used when the primary storage fails; what "
        "it holds at the end is copied into the primary storage afterwards (backfill).",
    )
    stop: Annotated[StrictBool, STOP_IS_FINAL] = Field(
        default=False,
        description="Set to true to stop the recording (finishing the upload); cannot be set back to false. "
        "Deleting the RecordingSession also stops it.",
    )
    paused: StrictBool = Field(
        default=False,
        description="true pauses the recording: the recorder stays in the room and keeps the session, but writes "
        f"no media (phase {Phase.PAUSED}); false resumes it, each participant's playlist continuing after an "
        "#EXT-X-DISCONTINUITY. Takes effect within a few seconds. Paused time counts toward maxDurationSeconds, "
        "and an empty room still ends the session after maxIdleSeconds.",
    )
    tag: StrictStr | None = Field(
        default=None,
        max_length=256,
        description="Free text, copied into the recording's manifest.",
    )
    notify: Notify | None = Field(
        default=None,
        description="Who is told what happens to the recording: a webhook (README \"Webhooks\"). May be "
        "changed while recording: events not delivered yet go to the new URL.",
    )


# ---------------------------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------------------------


class SkippedStream(StatusModel):
    """A stream of a participant that the recorder does not record."""

    kind: str = Field(description="audio or video.")
    codec: str | None = Field(default=None, description="The codec the participant publishes it in.")
    reason: SkipReason = Field(description=f"Why: {_listed(SkipReason)}.")
    message: str = Field(default="", description="What to do about it.")


class Participant(StatusModel):
    """A participant seen in the room during the recording."""

    id: IntOrString = Field(description="Janus participant id.")
    display: str | None = Field(default=None, description="Display name of the participant.")
    joined_at: AwareDatetime | None = Field(
        default=None, description="When the recording of this participant began."
    )
    left_at: AwareDatetime | None = Field(
        default=None, description="When the participant left or stopped publishing."
    )
    playlist: str | None = Field(default=None, description="Object key of the participant's HLS playlist.")
    skipped: list[SkippedStream] = Field(
        default_factory=list,
        description="What of this participant is not recorded, and why (the others are recorded all the same; the "
        "Degraded condition says so). A participant none of whose streams is recorded has no playlist.")
    stalls: int | None = Field(
        default=None, ge=0,
        description="Times their media stopped for 10 s while Janus still listed them and the recorder set up "
        "its forwarding again (the playlist goes on after a discontinuity).")
    dropped_frames: int | None = Field(
        default=None, ge=0,
        description="Video frames not recorded: a packet of theirs never came (the frame is dropped whole, never "
        "stored cut short), and the frames after it until the next keyframe (also when the recorder itself fell "
        "behind). manifest.json also has incompleteFrames (the first kind alone).")
    packets_rejected: int | None = Field(
        default=None, ge=0,
        description="Packets that came to their ports and were kept out: not from Janus's address, not the SSRC "
        "or payload type of Janus's forwarder, a timestamp far ahead, late or doubled.")
    packets_lost: int | None = Field(
        default=None, ge=0, description="Packets of Janus's forwarder that never came (sequence numbers missing).")


class UploadStatus(StatusModel):
    """Upload progress of the recording."""

    segments: int = Field(default=0, ge=0, description="Segments recorded so far.")
    pending_segments: int = Field(default=0, ge=0, description="Segments recorded but not stored yet.")
    recorded_bytes: int = Field(default=0, ge=0, description="Bytes recorded so far.")
    stored_bytes: int = Field(default=0, ge=0, description="Bytes stored in primary or backup storage.")
    progress: int = Field(
        default=0, ge=0, le=100, description="Percentage of recorded segments that are stored."
    )
    location: StorageLocation | None = Field(
        default=None,
        description="Where the stored segments are: primary, backup, or mixed (some in each).",
    )


class SpoolStatus(StatusModel):
    """The recorder's spool: segments not stored yet, on the pod's disk (an emptyDir with a size limit)."""

    limit_bytes: int = Field(default=0, ge=0, description="The spool's size limit (the emptyDir's sizeLimit).")
    used_bytes: int = Field(default=0, ge=0, description="Bytes in the spool when last measured.")
    full: bool = Field(
        default=False,
        description=f"True while the spool is above 90 % of its limit (condition {ConditionType.DISK_FULL}): new "
        "media is not recorded, segments not stored yet are kept and uploaded; recording resumes below 70 %.",
    )
    dropped_segments: int = Field(
        default=0, ge=0, description="Segments (per participant) not recorded because the spool was full."
    )
    dropped_seconds: float = Field(
        default=0.0, ge=0, description="Seconds of media (summed over participants) not recorded because the "
        "spool was full; manifest.json lists each stretch (diskFull)."
    )


class CompositeStatus(StatusModel):
    """The composite recording (mode composite or both)."""

    playlist: str = Field(description="Object key of the composite's HLS playlist (composite/index.m3u8).")
    frames: int = Field(default=0, ge=0, description="Pictures composed and encoded so far.")
    dropped_frames: int = Field(
        default=0, ge=0, description="Pictures not composed because the encoder could not keep up (the sound and "
        "the participants' own recordings never are)."
    )
    late_pictures: int = Field(
        default=0, ge=0, description="Participants' pictures that reached the composite after the composite picture "
        "of their time was made (later than its 0.3 s latency: a node too busy for real time, a network stall): "
        "shown a picture or more late. The participants' own recordings are not affected."
    )
    error: str | None = Field(default=None, description="Why the composite stopped while the participants' "
                              "recordings went on (mode both).")


class Condition(StatusModel):
    """A condition in the Kubernetes API conventions (as metav1.Condition)."""

    type: str = Field(
        max_length=316,
        pattern=CONDITION_TYPE_PATTERN,
        description=f"Type of the condition: {_listed(ConditionType)}.",
    )
    status: ConditionStatus = Field(description=f"Status of the condition: {_listed(ConditionStatus)}.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
        description="Programmatic identifier of the reason for the last transition, in CamelCase.",
    )
    message: str = Field(
        default="",
        max_length=32768,
        description="Human-readable details about the last transition.",
    )
    last_transition_time: AwareDatetime = Field(description="When the condition last changed its status.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation the condition was set for.",
    )


class RoomStatus(StatusModel):
    """The recorder's connection to the room (written by the recorder)."""

    state: RoomState = Field(description=f"{_listed(RoomState)}.")
    since: AwareDatetime | None = Field(default=None, description="When the connection reached this state.")
    message: str = Field(default="", max_length=4096, description="While reconnecting: the server and the error "
                         "that ended the connection, and the last attempt's.")
    reconnects: int = Field(default=0, ge=0, description="Times the connection was regained after a loss.")


class Interruption(StatusModel):
    """A lost recorder being replaced: set while the gap lasts, removed when the new recorder reports."""

    since: AwareDatetime = Field(description="When the operator saw the recorder lost.")
    reason: str = Field(
        min_length=1,
        max_length=128,
        pattern=CONDITION_REASON_PATTERN,
        description=f"Why it was lost: {_listed(InterruptionReason)}.",
    )
    message: str = Field(default="", max_length=4096, description="What happened, and which restart this is.")


class BackfillStatus(StatusModel):
    """The backfill of a BackedUp session: a Job copying the backup-only objects into the primary storage."""

    started_at: AwareDatetime | None = Field(default=None, description="When the operator started the backfill.")
    job: str | None = Field(default=None, description="Name of the current backfill Job.")
    attempts: int = Field(default=0, ge=0, description="Backfill Jobs started so far.")
    completed_at: AwareDatetime | None = Field(
        default=None, description=f"When every object was in the primary storage, verified (phase {Phase.COMPLETED})."
    )
    gave_up_at: AwareDatetime | None = Field(
        default=None, description="When the operator gave up (reason); the backup is left intact."
    )
    reason: str | None = Field(default=None, description=f"Why it gave up: {FailureReason.BACKFILL_TIMEOUT}, "
                               f"{FailureReason.BACKFILL_FAILED} or {FailureReason.INTEGRITY_MISMATCH}.")
    message: str | None = Field(default=None, description="What the backfill did, or why it gave up.")
    objects: int | None = Field(default=None, ge=0, description="Objects copied from the backup into the primary.")
    bytes: int | None = Field(default=None, ge=0, description="Bytes copied from the backup into the primary.")
    backup_deleted: bool | None = Field(
        default=None, description="Whether the backup copies were deleted after verification (not with keep: true)."
    )


class RecordingSessionStatus(StatusModel):
    """The observed state of the recording, written by the operator and the recorder."""

    phase: Annotated[Phase, PHASE_IS_FINAL] | None = Field(
        default=None,
        description=f"{_listed(Phase)}. A final phase is final (the API server refuses to move it), but "
        f"{PHASE_AFTER_BACKFILL[0].value} becomes {PHASE_AFTER_BACKFILL[1].value} after the backfill.",
    )
    recording_id: str | None = Field(default=None, description="Unique id of this recording.")
    started_at: AwareDatetime | None = Field(default=None, description="When recording started.")
    stopped_at: AwareDatetime | None = Field(default=None, description="When recording stopped.")
    stop_reason: StopReason | None = Field(
        default=None,
        description=f"Why recording stopped: {_listed(StopReason)} (details in message and conditions).",
    )
    message: str | None = Field(
        default=None, description="What a person should know about the session, especially on failure."
    )
    participants: list[Participant] = Field(
        default_factory=list, description="Participants recorded, with their playlists."
    )
    active_participants: int | None = Field(
        default=None, ge=0, description="Number of participants being recorded now."
    )
    upload: UploadStatus | None = Field(default=None, description="Upload progress.")
    spool: SpoolStatus | None = Field(
        default=None, description="The recorder's spool: its use, and what a full spool cost (in a pod)."
    )
    composite: CompositeStatus | None = Field(default=None, description="The composite recording (mode composite "
                                              "or both): its playlist and frame counts.")
    playlists: list[str] = Field(default_factory=list, description="Object keys of the HLS playlists.")
    manifest: str | None = Field(default=None, description="Object key of the recording's manifest.")
    pod: str | None = Field(default=None, description="Name of the current recorder pod.")
    recorder_started_at: AwareDatetime | None = Field(
        default=None, description="When the current recorder process started (the recorder writes it)."
    )
    heartbeat_at: AwareDatetime | None = Field(
        default=None, description="The recorder's last report while recording (at least every 10 s)."
    )
    restarts: int | None = Field(
        default=None, ge=0, description="Replacement recorders started so far (spec.recording.maxRestarts)."
    )
    room: RoomStatus | None = Field(
        default=None,
        description=f"The recorder's connection to the room: {RoomState.RECONNECTING} while a lost connection to "
        "Janus is being regained (spec.recording.reconnectSeconds), the gap listed in manifest.json (roomGaps).",
    )
    interruption: Interruption | None = Field(
        default=None,
        description="Set while a lost recorder is being replaced (the recording has a gap); absent otherwise.",
    )
    backfill: BackfillStatus | None = Field(
        default=None,
        description=f"A {Phase.BACKED_UP} session's backfill into the primary storage (kept once {Phase.COMPLETED}).",
    )
    applied_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation whose spec the current recorder has applied "
        "(paused, maxDurationSeconds, maxIdleSeconds, tag; the recorder writes it)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation acted on: at once while no recorder runs "
        "(Pending, a final phase), else once the recorder has applied it (appliedGeneration). Lagging "
        ".metadata.generation, the Reconciling condition is True."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description=f"Conditions: {_listed(ConditionType, 'and')} (the summary).",
    )


# ---------------------------------------------------------------------------------------------------------
# The resource
# ---------------------------------------------------------------------------------------------------------


class ObjectMeta(BaseModel):
    """The part of Kubernetes' ObjectMeta that Reel reads; other fields are kept as they are."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: StrictStr = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the object."
    )
    namespace: StrictStr | None = Field(default=None, description="Namespace of the object.")
    uid: str | None = Field(default=None, description="UID of the object.")
    generation: int | None = Field(default=None, description="Generation of the spec.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")


class RecordingSession(BaseModel):
    """Records a Janus VideoRoom room into HLS on S3-compatible storage (or a directory)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    api_version: Literal["reel.dev/v1alpha1"] = Field(default=API_VERSION, description="reel.dev/v1alpha1")
    kind: Literal["RecordingSession"] = Field(default=KIND, description="RecordingSession")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: RecordingSessionSpec = Field(description="The desired recording.")
    status: RecordingSessionStatus = Field(
        default_factory=RecordingSessionStatus, description="The observed state of the recording."
    )

    def to_dict(self, *, status: bool = True) -> dict[str, Any]:
        """The Kubernetes form (camelCase, JSON types), defaults filled in, unset optional fields left out."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        for key in ("labels", "annotations"):
            if not data["metadata"].get(key):
                data["metadata"].pop(key, None)
        if not status:
            data.pop("status", None)
        return data


__all__ = [
    "API_VERSION",
    "CATEGORIES",
    "CRD_NAME",
    "DEFAULT_BACKFILL_TIMEOUT_SECONDS",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "TERMINAL_PHASES",
    "VERSION",
    "AudioCodec",
    "BackfillStatus",
    "BackupStorage",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "Ingest",
    "IntOrString",
    "Interruption",
    "LocalStorage",
    "Mode",
    "Notify",
    "ObjectMeta",
    "Output",
    "Participant",
    "Phase",
    "Recording",
    "RecordingSession",
    "RecordingSessionSpec",
    "RecordingSessionStatus",
    "Room",
    "RoomStatus",
    "SecretKeyRef",
    "SecretRef",
    "SegmentFormat",
    "ServerSideEncryption",
    "SkippedStream",
    "SpoolStatus",
    "StopReason",
    "Storage",
    "StorageLocation",
    "StreamTypes",
    "UploadStatus",
    "Webhook",
]
