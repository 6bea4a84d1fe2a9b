"""Where a session may point, and with which credentials: pure checks the operator runs before it starts a
recorder pod (handlers/create.py), the same rules the chart's ValidatingAdmissionPolicy applies at admission
(charts/reel/templates/admission-policy.yaml).

A session names up to four endpoints: ``spec.room.server`` (ws:// or wss://), ``spec.storage.endpoint``,
``spec.backupStorage.endpoint`` and ``spec.notify.webhook.url`` (http:// or https://, optional; the webhook's
is checked again, resolved anew, before each delivery: webhooks/delivery.py). Each one's host must not be

- a denied address: an IP literal, or any address a host name resolves to, in ``denied_cidrs`` (by default
  loopback 127.0.0.0/8 and ::1, link-local 169.254.0.0/16 (cloud metadata) and fe80::/10, "this network"
  0.0.0.0/8 and ::, AWS's IPv6 metadata address fd00:ec2::254, and the API server's addresses the chart or
  the operator's own environment (KUBERNETES_SERVICE_HOST) give); an IPv4-mapped IPv6 address counts as its
  IPv4 address;
- a denied name (``denied_hosts``: ``localhost``, ``kubernetes.default.svc``, ``metadata.google.internal``,
  ...; an entry starting with "." denies every name under it);
- an address in a form only some resolvers read (``2130706433``, ``127.1``, ``0x7f.0.0.1``, an IPv6 zone);

and when an allow-list is set (``allowed_hosts`` and/or ``allowed_cidrs``), it must be in it: a name listed in
``allowed_hosts`` (same "." suffix form), or an address (a literal, or every address the name resolves to)
in ``allowed_cidrs``. A deny always wins over an allow.

A name that cannot be resolved is not refused here (the recorder reports JanusUnreachable or StorageFailed
with the resolver's error), unless an allow-list is set: then it cannot be shown to be allowed. The check
happens once, before the pod starts: a name whose DNS answer changes afterwards (DNS rebinding) is not caught
here; NetworkPolicies are the enforcement for that.

Without ``credentialsSecretRef`` an S3 store would be reached with ambient cloud credentials (boto3's default
chain: web identity, the node's instance profile); ``credential_problems`` refuses that unless the
installation allows it (chart ``recorder.allowAmbientCredentials``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Refused by default: loopback, link-local (cloud metadata), "this host", AWS's IPv6 metadata address.
DEFAULT_DENIED_CIDRS = ("127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128",
                        "fd00:ec2::254/128")
#: Refused by default, by name: the API server's names and the metadata servers'.
DEFAULT_DENIED_HOSTS = ("localhost", ".localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                        "kubernetes.default.svc.cluster.local", "metadata.google.internal", "metadata")

#: A host that is neither a valid IP literal nor a DNS name: its last label is a number (127.1, 2130706433,
#: 017.0.0.1) or hexadecimal (0x7f.1): inet_aton reads those as addresses, the admission policy cannot.
_NUMERIC_LAST_LABEL = re.compile(r"(^|\.)(0x[0-9a-f]*|[0-9]+)$")

Resolve = Callable[[str, int | None], Iterable[str]]


def parse_cidrs(values: Iterable[str], what: str = "CIDR") -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses) as networks; raises ValueError naming the bad one."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{what} {value!r} is not a CIDR or an IP address") from None
    return tuple(out)


@dataclass(frozen=True)
class EndpointPolicy:
    denied_cidrs: tuple[IPNetwork, ...] = parse_cidrs(DEFAULT_DENIED_CIDRS)
    denied_hosts: tuple[str, ...] = DEFAULT_DENIED_HOSTS
    allowed_hosts: tuple[str, ...] = ()
    allowed_cidrs: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> EndpointPolicy:
        """From the operator's settings (``denied_cidrs``, ``denied_hosts``, ``allowed_hosts``,
        ``allowed_cidrs``: strings, checked by Settings.from_env)."""
        return cls(denied_cidrs=parse_cidrs(settings.denied_cidrs),
                   denied_hosts=tuple(_norm(h) for h in settings.denied_hosts),
                   allowed_hosts=tuple(_norm(h) for h in settings.allowed_hosts),
                   allowed_cidrs=parse_cidrs(settings.allowed_cidrs))

    @property
    def restricted(self) -> bool:
        """Whether an allow-list is set (then every endpoint must be in it)."""
        return bool(self.allowed_hosts or self.allowed_cidrs)

    def describe_allowed(self) -> str:
        """What may be used, for messages."""
        if not self.restricted:
            cidrs, names = ", ".join(map(str, self.denied_cidrs)) or "-", ", ".join(self.denied_hosts) or "-"
            return f"any host but loopback, link-local (cloud metadata) and the API server (denied: {cidrs}; {names})"
        parts = []
        if self.allowed_hosts:
            parts.append(f"hosts {', '.join(self.allowed_hosts)}")
        if self.allowed_cidrs:
            parts.append(f"addresses in {', '.join(map(str, self.allowed_cidrs))}")
        return "only " + " or ".join(parts)


def _norm(host: str) -> str:
    host = host.strip().lower()
    return host[:-1] if host.endswith(".") and len(host) > 1 else host


def host_matches(host: str, patterns: Iterable[str]) -> str | None:
    """The first pattern that matches ``host``: equal, or ".suffix" matching a name under it."""
    for p in patterns:
        if host == p or (p.startswith(".") and host.endswith(p)):
            return p
    return None


def _in(addr: IPAddress, networks: Iterable[IPNetwork]) -> IPNetwork | None:
    candidates = [addr]
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        candidates.append(addr.ipv4_mapped)
    for net in networks:
        if any(a.version == net.version and a in net for a in candidates):
            return net
    return None


def session_endpoints(spec: Any) -> list[tuple[str, str]]:
    """(field, URL) of every endpoint a session spec names (the typed RecordingSessionSpec)."""
    out = [("spec.room.server", spec.room.server)]
    for field, store in (("spec.storage", spec.storage), ("spec.backupStorage", spec.backup_storage)):
        if store is not None and getattr(store, "endpoint", None):
            out.append((f"{field}.endpoint", store.endpoint))
    webhook = webhook_of(spec)
    if webhook is not None:
        out.append((WEBHOOK_FIELD, webhook.url))
    return out


#: The field of the webhook URL (checked at the start like the others, and again before each delivery).
WEBHOOK_FIELD = "spec.notify.webhook.url"


def webhook_of(spec: Any):
    """spec.notify.webhook of a typed spec, or None."""
    notify = getattr(spec, "notify", None)
    return getattr(notify, "webhook", None) if notify is not None else None


def resolve_host(host: str, port: int | None = None) -> list[str]:
    """The addresses a name resolves to (socket.getaddrinfo, as the recorder's connection would); raises
    OSError when it cannot be resolved."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(info[4][0] for info in infos))


def url_problem(field: str, url: str, policy: EndpointPolicy, resolve: Resolve) -> str | None:
    """What is wrong with one endpoint (a message naming the field, the host and the address), or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
        raw_host = parts.hostname
    except ValueError as err:
        return f"{field}: {url!r} is not a valid URL ({err})"
    if not raw_host:
        return f"{field}: {url!r} has no host"
    host = _norm(raw_host)
    allowed = policy.describe_allowed()
    try:
        literal: IPAddress | None = None if "%" in host else ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is None and ("%" in host or ":" in host or _NUMERIC_LAST_LABEL.search(host)):
        return f"{field}: host {host!r} is neither a host name nor a plain IP address; allowed: {allowed}"
    if literal is None:
        denied = host_matches(host, policy.denied_hosts)
        if denied is not None:
            return f"{field}: host {host!r} is not allowed (denied name {denied}); allowed: {allowed}"
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(host, port)]
        except (OSError, UnicodeError, ValueError) as err:
            if policy.restricted and host_matches(host, policy.allowed_hosts) is None:
                return (f"{field}: host {host!r} cannot be resolved ({err}) and is not an allowed host name; "
                        f"allowed: {allowed}")
            return None  # not a policy failure: the recorder reports it (JanusUnreachable, StorageFailed)
    else:
        addresses = [literal]
    for addr in addresses:
        net = _in(addr, policy.denied_cidrs)
        if net is not None:
            via = "is" if literal is not None else "resolves to"
            return f"{field}: host {host!r} {via} {addr}, a denied address (in {net}); allowed: {allowed}"
    if policy.restricted and host_matches(host, policy.allowed_hosts) is None:
        outside = [a for a in addresses if _in(a, policy.allowed_cidrs) is None]
        if outside or not addresses:
            via = "is" if literal is not None else "resolves to"
            shown = ", ".join(map(str, outside or addresses)) or "nothing"
            return f"{field}: host {host!r} {via} {shown}, not an allowed host or address; allowed: {allowed}"
    return None


def endpoint_problems(spec: Any, policy: EndpointPolicy, resolve: Resolve | None = None) -> list[str]:
    """Every endpoint of the session spec that is not allowed, one message each (empty: all allowed).
    ``resolve(host, port)``: the addresses of a name (default resolve_host: the system resolver)."""
    resolve = resolve or resolve_host
    return [p for field, url in session_endpoints(spec) if (p := url_problem(field, url, policy, resolve))]


def credential_problems(spec: Any, allow_ambient: bool) -> list[str]:
    """S3 stores without credentialsSecretRef, when ambient cloud credentials are not allowed."""
    if allow_ambient:
        return []
    out = []
    for field, store in (("spec.storage", spec.storage), ("spec.backupStorage", spec.backup_storage)):
        if store is not None and getattr(store, "bucket", None) and store.credentials_secret_ref is None:
            out.append(f"{field} names bucket {store.bucket!r} without credentialsSecretRef: this installation "
                       "does not let recorders use ambient cloud credentials (the node's instance profile, web "
                       "identity; chart value recorder.allowAmbientCredentials). Name a Secret with "
                       "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    return out
