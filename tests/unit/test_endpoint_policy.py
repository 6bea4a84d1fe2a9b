"""Where a session may point (reel_operator/endpoints.py): the operator's check before it starts a recorder,
with a fake resolver; the settings that feed it; the create handler failing EndpointNotAllowed /
CredentialsRequired; the recorder ServiceAccount's annotations. The chart's admission policy applies the same
rules (tests/e2e/test_session_admission.py)."""

from __future__ import annotations

import pytest

from reel_api import FailureReason, load_session
from reel_operator import endpoints, rbac
from reel_operator.endpoints import EndpointPolicy, endpoint_problems, parse_cidrs
from reel_operator.settings import Settings, SettingsError

#: What the fake DNS knows.
DNS = {
    "janus.media.svc": ["10.244.0.17"],
    "minio.media.svc": ["10.244.0.18"],
    "evil.example.com": ["127.0.0.1"],
    "meta.example.com": ["169.254.169.254"],
    "v6meta.example.com": ["fe80::1"],
    "mixed.example.com": ["10.244.0.9", "127.0.0.2"],
    "mapped.example.com": ["::ffff:127.0.0.1"],
    "api.example.com": ["10.96.0.1"],
    "janus.example.com": ["203.0.113.7"],
    "store.example.com": ["198.51.100.20", "2001:db8::20"],
}


def resolve(host, port=None):
    if host not in DNS:
        raise OSError(-2, "Name or service not known")
    return DNS[host]


def spec(server="ws://janus.media.svc:8188", endpoint=None, backup=None, creds=True, backup_creds=True, webhook=None):
    storage = {"bucket": "recordings"}
    if endpoint:
        storage["endpoint"] = endpoint
    if creds:
        storage["credentialsSecretRef"] = {"name": "s3"}
    body = {"room": {"server": server, "id": 1}, "storage": storage}
    if backup is not None:
        body["backupStorage"] = {"bucket": "backup", **({"endpoint": backup} if backup else {}),
                                 **({"credentialsSecretRef": {"name": "s3"}} if backup_creds else {})}
    if webhook:
        body["notify"] = {"webhook": {"url": webhook, "secretRef": {"name": "hook", "key": "key"}}}
    return load_session({"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession",
                         "metadata": {"name": "a", "namespace": "media", "uid": "u"}, "spec": body}).spec


DEFAULT = EndpointPolicy()
WITH_API = EndpointPolicy(denied_cidrs=DEFAULT.denied_cidrs + parse_cidrs(["10.96.0.1"]))


def problems(policy=DEFAULT, **kw):
    return endpoint_problems(spec(**kw), policy, resolve)


# -- allowed by default ---------------------------------------------------------------------------------------
ALLOWED = [
    dict(server="ws://janus.media.svc:8188"),
    dict(server="wss://janus.example.com:443/janus"),
    dict(server="ws://10.244.0.17:8188"),
    dict(server="ws://[2001:db8::5]:8188"),
    dict(server="ws://janus.media.svc:8188", endpoint="http://minio.media.svc:9000"),
    dict(server="ws://janus.media.svc:8188", endpoint="https://store.example.com"),
    dict(server="ws://unknown.invalid:8188"),  # not resolvable: JanusUnreachable later, not a policy failure
    dict(server="ws://janus.media.svc:8188", endpoint="https://s3.eu-west-1.amazonaws.com.invalid"),
    dict(server="ws://kubernetes-janus.media.svc:8188"),  # only the exact names are the API server's
    dict(server="ws://janus.media.svc:8188", backup="http://minio.media.svc:9000"),
    dict(server="ws://JANUS.Media.SVC.:8188"),  # case and a trailing dot do not matter
    dict(webhook="https://hooks.example.invalid/reel"),
]


@pytest.mark.parametrize("kw", ALLOWED, ids=[str(i) for i in range(len(ALLOWED))])
def test_allowed_by_default(kw):
    assert problems(**kw) == []


# -- refused by default: (spec kwargs, field named, words in the message) ------------------------------------
REFUSED = [
    (dict(server="ws://169.254.169.254:80"), "spec.room.server", "169.254.169.254"),
    (dict(server="ws://127.0.0.1:8188"), "spec.room.server", "127.0.0.0/8"),
    (dict(server="ws://127.8.9.10:8188"), "spec.room.server", "127.0.0.0/8"),
    (dict(server="ws://[::1]:8188"), "spec.room.server", "::1/128"),
    (dict(server="ws://[fe80::1]:8188"), "spec.room.server", "fe80::/10"),
    (dict(server="ws://[::ffff:127.0.0.1]:8188"), "spec.room.server", "127.0.0.0/8"),  # IPv4-mapped
    (dict(server="ws://[::ffff:169.254.169.254]:8188"), "spec.room.server", "169.254.0.0/16"),
    (dict(server="ws://0.0.0.0:8188"), "spec.room.server", "0.0.0.0/8"),
    (dict(server="ws://[::]:8188"), "spec.room.server", "::/128"),
    (dict(server="ws://[fd00:ec2::254]:80"), "spec.room.server", "fd00:ec2::254"),
    (dict(server="ws://localhost:8188"), "spec.room.server", "denied name localhost"),
    (dict(server="ws://LocalHost.:8188"), "spec.room.server", "denied name localhost"),
    (dict(server="ws://janus.localhost:8188"), "spec.room.server", "denied name .localhost"),
    (dict(server="wss://kubernetes.default.svc:443"), "spec.room.server", "kubernetes.default.svc"),
    (dict(server="wss://kubernetes.default.svc.cluster.local"), "spec.room.server", "cluster.local"),
    (dict(server="wss://kubernetes:443"), "spec.room.server", "denied name kubernetes"),
    (dict(server="wss://kubernetes.default"), "spec.room.server", "denied name kubernetes.default"),
    (dict(server="ws://metadata.google.internal"), "spec.room.server", "metadata.google.internal"),
    (dict(server="ws://evil.example.com:8188"), "spec.room.server", "resolves to 127.0.0.1"),
    (dict(server="ws://meta.example.com:8188"), "spec.room.server", "resolves to 169.254.169.254"),
    (dict(server="ws://v6meta.example.com:8188"), "spec.room.server", "resolves to fe80::1"),
    (dict(server="ws://mixed.example.com:8188"), "spec.room.server", "127.0.0.2"),  # one bad answer suffices
    (dict(server="ws://mapped.example.com:8188"), "spec.room.server", "::ffff:7f00:1, a denied address (in 127.0.0"),
    (dict(server="ws://2130706433:8188"), "spec.room.server", "neither a host name nor a plain IP"),
    (dict(server="ws://127.1:8188"), "spec.room.server", "neither a host name nor a plain IP"),
    (dict(server="ws://0x7f.0.0.1:8188"), "spec.room.server", "neither a host name nor a plain IP"),
    (dict(server="ws://0177.0.0.1:8188"), "spec.room.server", "neither a host name nor a plain IP"),
    (dict(endpoint="http://169.254.169.254/latest/meta-data"), "spec.storage.endpoint", "169.254.169.254"),
    (dict(endpoint="https://localhost:9000"), "spec.storage.endpoint", "localhost"),
    (dict(endpoint="http://evil.example.com:9000"), "spec.storage.endpoint", "resolves to 127.0.0.1"),
    (dict(backup="http://127.0.0.1:9000"), "spec.backupStorage.endpoint", "127.0.0.1"),
    (dict(backup="https://kubernetes.default.svc"), "spec.backupStorage.endpoint", "kubernetes.default.svc"),
    (dict(webhook="http://169.254.169.254/hook"), "spec.notify.webhook.url", "169.254.169.254"),
    (dict(webhook="https://evil.example.com/hook"), "spec.notify.webhook.url", "resolves to 127.0.0.1"),
]


@pytest.mark.parametrize(("kw", "field", "words"), REFUSED, ids=[f"{i}-{r[2]}" for i, r in enumerate(REFUSED)])
def test_refused_by_default_naming_the_field(kw, field, words):
    found = problems(**kw)
    assert len(found) == 1, found
    assert found[0].startswith(f"{field}: "), found
    assert words in found[0], found
    assert "allowed:" in found[0], found


@pytest.mark.parametrize(("url", "words"), [
    ("ws://[fe80::1%25eth0]:8188", "neither a host name nor a plain IP"),  # the API's URL pattern refuses these
    ("ws://:8188", "has no host"),
    ("ws://janus.media.svc:99999", "not a valid URL"),
    ("ws://[::1:8188", "not a valid URL"),
])
def test_urls_the_api_refuses_anyway(url, words):
    assert words in endpoints.url_problem("spec.room.server", url, DEFAULT, resolve)


def test_every_bad_endpoint_is_listed():
    found = problems(server="ws://127.0.0.1:8188", endpoint="http://169.254.169.254", backup="http://[::1]:9000")
    assert [p.split(":", 1)[0] for p in found] == ["spec.room.server", "spec.storage.endpoint",
                                                   "spec.backupStorage.endpoint"]


def test_the_api_server_address_is_refused_by_literal_and_by_name():
    assert "10.96.0.1" in problems(WITH_API, server="wss://10.96.0.1:443")[0]
    assert "resolves to 10.96.0.1" in problems(WITH_API, server="wss://api.example.com")[0]
    assert problems(DEFAULT, server="wss://api.example.com") == []


# -- allow-lists ------------------------------------------------------------------------------------------------
HOSTS = EndpointPolicy(allowed_hosts=("janus.media.svc", ".storage.example.com", "store.example.com"))
CIDRS = EndpointPolicy(allowed_cidrs=parse_cidrs(["10.244.0.0/16", "2001:db8::/32"]))
BOTH = EndpointPolicy(allowed_hosts=("janus.example.com",), allowed_cidrs=parse_cidrs(["10.244.0.0/16"]))


@pytest.mark.parametrize(("policy", "kw", "ok"), [
    (HOSTS, dict(server="ws://janus.media.svc:8188"), True),
    (HOSTS, dict(server="ws://janus.media.svc:8188", endpoint="https://store.example.com"), True),
    (HOSTS, dict(server="ws://janus.media.svc:8188", endpoint="https://eu.storage.example.com"), True),  # suffix
    (HOSTS, dict(server="ws://other.media.svc:8188"), False),
    (HOSTS, dict(server="ws://10.244.0.17:8188"), False),  # an address is not a listed name
    (HOSTS, dict(server="ws://janus.media.svc:8188", endpoint="https://storage.example.com.evil.org"), False),
    (CIDRS, dict(server="ws://janus.media.svc:8188", endpoint="http://minio.media.svc:9000"), True),  # resolved
    (CIDRS, dict(server="ws://10.244.3.4:8188"), True),
    (CIDRS, dict(server="ws://[2001:db8::9]:8188"), True),
    (CIDRS, dict(server="wss://janus.example.com"), False),  # resolves outside the CIDRs
    (CIDRS, dict(server="ws://mixed.example.com:8188"), False),  # one answer outside (and denied)
    (CIDRS, dict(server="ws://unknown.invalid:8188"), False),  # unresolvable: cannot be shown to be allowed
    (CIDRS, dict(server="ws://10.244.0.1:8188", endpoint="https://store.example.com"), False),
    (BOTH, dict(server="wss://janus.example.com"), True),  # by name
    (BOTH, dict(server="ws://janus.media.svc:8188"), True),  # by address
    (BOTH, dict(server="ws://203.0.113.7:8188"), False),  # janus.example.com's address, given as a literal
])
def test_allow_lists(policy, kw, ok):
    found = problems(policy, **kw)
    assert (found == []) == ok, found
    if not ok:
        assert "allowed: only" in found[0], found


def test_a_deny_wins_over_an_allow():
    policy = EndpointPolicy(denied_cidrs=WITH_API.denied_cidrs, allowed_cidrs=parse_cidrs(["10.0.0.0/8", "::/0"]),
                            allowed_hosts=("localhost", "evil.example.com"))
    assert problems(policy, server="wss://10.96.0.1") and problems(policy, server="ws://[::1]:1")
    assert problems(policy, server="ws://localhost:1") and problems(policy, server="ws://evil.example.com:1")


def test_an_allowed_unresolvable_name_passes():
    assert problems(HOSTS, server="ws://janus.media.svc:8188", endpoint="https://x.storage.example.com") == []


def test_nothing_denied_when_the_lists_are_emptied():
    policy = EndpointPolicy(denied_cidrs=(), denied_hosts=())
    assert problems(policy, server="ws://127.0.0.1:8188", endpoint="http://localhost:9000") == []
    assert problems(policy, server="ws://127.1:8188")  # still not a form both checks read alike


def test_the_real_resolver_finds_localhost():
    assert "127.0.0.1" in endpoints.resolve_host("localhost") or "::1" in endpoints.resolve_host("localhost")
    with pytest.raises(OSError):
        endpoints.resolve_host("no-such-host.invalid")


# -- settings ----------------------------------------------------------------------------------------------------
def test_settings_defaults_and_environment():
    s = Settings.from_env({})
    assert s.denied_cidrs == endpoints.DEFAULT_DENIED_CIDRS and s.denied_hosts == endpoints.DEFAULT_DENIED_HOSTS
    assert not s.allowed_hosts and not s.allowed_cidrs and not s.allow_ambient_credentials
    s = Settings.from_env({"REEL_DENIED_CIDRS": "127.0.0.0/8, 10.96.0.1", "KUBERNETES_SERVICE_HOST": "10.96.0.2",
                           "REEL_DENIED_HOSTS": "", "REEL_ALLOWED_HOSTS": "a.example.com,.b.example.com",
                           "REEL_ALLOWED_CIDRS": "10.0.0.0/8", "REEL_ALLOW_AMBIENT_CREDENTIALS": "true",
                           "REEL_RECORDER_SERVICE_ACCOUNT_ANNOTATIONS": '{"eks.amazonaws.com/role-arn": "arn:x"}'})
    assert s.denied_cidrs == ("127.0.0.0/8", "10.96.0.1", "10.96.0.2")  # the API server the operator sees
    assert s.denied_hosts == () and s.allowed_hosts == ("a.example.com", ".b.example.com")
    assert s.recorder_sa_annotations == {"eks.amazonaws.com/role-arn": "arn:x"}
    policy = EndpointPolicy.from_settings(s)
    assert policy.restricted and str(policy.denied_cidrs[1]) == "10.96.0.1/32"
    for env in ({"REEL_DENIED_CIDRS": "10.0.0.0/33"}, {"REEL_ALLOWED_CIDRS": "nope"},
                {"REEL_ALLOW_AMBIENT_CREDENTIALS": "maybe"}, {"REEL_RECORDER_SERVICE_ACCOUNT_ANNOTATIONS": "[]"}):
        with pytest.raises(SettingsError):
            Settings.from_env(env)


def test_service_account_annotations_only_with_ambient_credentials():
    annotations = {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/rec"}
    assert Settings(recorder_service_account_annotations=annotations).recorder_sa_annotations == {}
    s = Settings(recorder_service_account_annotations=annotations, allow_ambient_credentials=True)
    session = load_session({"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession",
                            "metadata": {"name": "a", "namespace": "media", "uid": "u"},
                            "spec": {"room": {"server": "ws://j:1", "id": 1}, "storage": {"bucket": "bkt"}}})
    sa, role, _binding = rbac.build_identity(session, s.recorder_sa_annotations)
    assert sa["metadata"]["annotations"] == annotations and "annotations" not in role["metadata"]
    assert "annotations" not in rbac.build_identity(session)[0]["metadata"]


# -- ambient credentials -----------------------------------------------------------------------------------------
def test_credentials_required_unless_ambient_ones_are_allowed():
    assert endpoints.credential_problems(spec(), False) == []
    found = endpoints.credential_problems(spec(creds=False, backup="", backup_creds=False), False)
    assert [p.split(" ", 1)[0] for p in found] == ["spec.storage", "spec.backupStorage"]
    assert "recorder.allowAmbientCredentials" in found[0]
    assert endpoints.credential_problems(spec(creds=False), True) == []


def test_a_local_store_needs_no_credentials():
    s = load_session({"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession",
                      "metadata": {"name": "a", "namespace": "media", "uid": "u"},
                      "spec": {"room": {"server": "ws://j:1", "id": 1}, "storage": {"local": {"path": "/r"}}}}).spec
    assert endpoints.credential_problems(s, False) == []


# -- the create handler --------------------------------------------------------------------------------------------
def _handler_ctx(monkeypatch, settings):
    import kopf
    from tests.support.fake_kube import FakeKube

    from reel_operator.handlers import common
    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: None)
    return common.Context(kube=FakeKube(), settings=settings)


def _add_session(ctx, server):
    ctx.kube.add_session("a")
    ctx.kube.sessions[("media", "a")]["spec"]["room"]["server"] = server
    return ctx.kube.get_session("media", "a")


def _ready(ctx, name):
    status = ctx.kube.sessions[("media", name)]["status"]
    return status, next(c for c in status["conditions"] if c["type"] == "Ready")


def test_create_fails_endpoint_not_allowed_before_creating_anything(monkeypatch):
    from reel_operator.handlers import create

    ctx = _handler_ctx(monkeypatch, Settings(allow_ambient_credentials=True))
    body = _add_session(ctx, "ws://localhost:8188")
    create.start(ctx, body)
    status, ready = _ready(ctx, "a")
    assert status["phase"] == "Failed" and ready["reason"] == FailureReason.ENDPOINT_NOT_ALLOWED
    assert status["message"].startswith("spec.room.server: host 'localhost'")
    assert ctx.kube.objects == {}  # no pod, no identity, no room lock


def test_create_resolves_names(monkeypatch):
    from reel_operator.handlers import create

    monkeypatch.setattr(endpoints, "resolve_host", resolve)
    ctx = _handler_ctx(monkeypatch, Settings(allow_ambient_credentials=True))
    body = _add_session(ctx, "ws://meta.example.com:80")
    create.start(ctx, body)
    status, ready = _ready(ctx, "a")
    assert ready["reason"] == FailureReason.ENDPOINT_NOT_ALLOWED and "resolves to 169.254.169.254" in status["message"]


def test_create_fails_credentials_required(monkeypatch):
    from reel_operator.handlers import create

    ctx = _handler_ctx(monkeypatch, Settings())
    body = ctx.kube.add_session("a")  # storage: {bucket: rec}, no credentialsSecretRef
    create.start(ctx, body)
    status, ready = _ready(ctx, "a")
    assert status["phase"] == "Failed" and ready["reason"] == FailureReason.CREDENTIALS_REQUIRED
    assert "spec.storage" in status["message"] and ctx.kube.objects == {}


def test_create_annotates_the_recorder_service_account(monkeypatch):
    from reel_operator.handlers import create

    annotations = {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/rec"}
    ctx = _handler_ctx(monkeypatch, Settings(allow_ambient_credentials=True,
                                             recorder_service_account_annotations=annotations))
    create.start(ctx, ctx.kube.add_session("a"))
    sa = ctx.kube.objects[("ServiceAccount", "media", "reel-rec-a")]
    assert sa["metadata"]["annotations"] == annotations
