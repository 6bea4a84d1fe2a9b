"""An isolated test network: one Linux network namespace per test session.

WebRTC cannot run over 127.0.0.1 (Janus never offers a loopback candidate, aioice skips loopback), so Janus,
the test publishers and the recorder run inside a network namespace that has a real (veth) interface with a
private address.  Everything inside the namespace uses that one address (``TestNetwork.addr``); ICE between
two processes with the same address works (the kernel routes it over the namespace's own ``lo``).

The other end of the veth pair stays in the root namespace with a test-owned address
(``TestNetwork.host_addr``), so the pytest process can talk to Janus's HTTP/WebSocket ports directly at
``TestNetwork.addr``.  Nothing here touches the machine's real interfaces or the root namespace's firewall.

Loss injection works on chosen UDP ports inside the namespace (``iptables`` statistic match): see
:meth:`TestNetwork.add_udp_loss`.  Delay/reordering (``tc netem``) is not possible on this machine's kernel:
it has no ``sch_netem`` (nor ``sch_prio``) and modules cannot be loaded.

Needs root.  Names: namespace ``reelt-<pid>-<n>``, root-side veth ``rlt<pid>x<n>``, inner veth ``reel0``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

NS_PREFIX = "reelt-"
INNER_IF = "reel0"
# Test subnets are taken from 10.213.0.0/16, one /24 per TestNetwork.
SUBNET_POOL = ipaddress.ip_network("10.213.0.0/16")

_counter = itertools.count()


def _run(argv: Sequence[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    res = subprocess.run(list(argv), check=False, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ns_pids(ns: str) -> list[int]:
    res = _run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def _kill_ns_processes(ns: str, timeout: float = 5.0) -> None:
    """Stop every process that lives in namespace ``ns`` (our own test processes): TERM, then KILL."""
    pids = _ns_pids(ns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [p for p in _ns_pids(ns) if _pid_alive(p)]
        if pids:
            time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def list_test_namespaces() -> list[str]:
    res = _run(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in res.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(NS_PREFIX)]


def remove_namespace(ns: str) -> None:
    """Kill the processes inside ``ns`` and delete it (its veth pair goes with it)."""
    _kill_ns_processes(ns)
    _run(["ip", "netns", "del", ns], check=False)


def cleanup_stale() -> list[str]:
    """Remove test namespaces left behind by crashed runs (their creating pid is gone)."""
    removed = []
    for ns in list_test_namespaces():
        m = re.fullmatch(re.escape(NS_PREFIX) + r"(\d+)-(\d+)", ns)
        if not m:
            continue
        if _pid_alive(int(m.group(1))):
            continue  # another live test session owns it
        remove_namespace(ns)
        removed.append(ns)
    # Root-side veths whose namespace vanished disappear with their peer; catch leftovers anyway.
    res = _run(["ip", "-o", "link", "show"], check=False)
    for m in re.finditer(r"^\d+: (rlt(\d+)x\d+)[@:]", res.stdout, re.M):
        if not _pid_alive(int(m.group(2))):
            _run(["ip", "link", "del", m.group(1)], check=False)
    return removed


def _used_networks() -> list[ipaddress.IPv4Network]:
    res = _run(["ip", "-4", "-o", "addr", "show"], check=False)
    nets = []
    for m in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+/\d+)", res.stdout):
        nets.append(ipaddress.ip_interface(m.group(1)).network)
    res = _run(["ip", "-4", "route", "show"], check=False)
    for m in re.finditer(r"^(\d+\.\d+\.\d+\.\d+(?:/\d+)?) ", res.stdout, re.M):
        nets.append(ipaddress.ip_network(m.group(1), strict=False))
    return nets


def _pick_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    subnets = list(SUBNET_POOL.subnets(new_prefix=24))
    start = os.getpid() % len(subnets)
    for i in range(len(subnets)):
        cand = subnets[(start + i) % len(subnets)]
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise RuntimeError(f"no free /24 left in {SUBNET_POOL}")


@dataclass
class Rule:
    """A firewall/qdisc change inside the namespace; ``remove()`` undoes it."""

    net: TestNetwork
    undo: list[list[str]] = field(default_factory=list)

    def remove(self) -> None:
        for argv in self.undo:
            self.net.run(argv, check=False)
        self.undo = []


class TestNetwork:
    """One network namespace with a veth interface (``reel0``) holding ``addr`` (a 10.213.x.2/24 address).

    Usage::

        with TestNetwork() as net:
            p = net.popen(["janus", ...])
            net.run(["ip", "addr"])
    """

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.pid = os.getpid()
        n = next(_counter)
        self.ns = f"{NS_PREFIX}{self.pid}-{n}"
        self.host_if = f"rlt{self.pid}x{n}"
        self.inner_if = INNER_IF
        self.subnet: ipaddress.IPv4Network | None = None
        self.addr = ""  # address of reel0 inside the namespace: Janus, publishers, recorder use it
        self.host_addr = ""  # root-namespace end of the veth pair
        self._procs: list[subprocess.Popen] = []
        self._created = False
        self._rule_ids = itertools.count(1)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def create(self) -> TestNetwork:
        if os.geteuid() != 0:
            raise PermissionError("TestNetwork needs root (ip netns)")
        cleanup_stale()
        self.subnet = _pick_subnet()
        hosts = list(itertools.islice(self.subnet.hosts(), 2))
        self.host_addr, self.addr = str(hosts[0]), str(hosts[1])
        plen = self.subnet.prefixlen
        _run(["ip", "netns", "add", self.ns])
        self._created = True
        try:
            _run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.inner_if,
                  "netns", self.ns])
            _run(["ip", "addr", "add", f"{self.host_addr}/{plen}", "dev", self.host_if])
            _run(["ip", "link", "set", self.host_if, "up"])
            self.run(["ip", "link", "set", "lo", "up"])
            self.run(["ip", "addr", "add", f"{self.addr}/{plen}", "dev", self.inner_if])
            self.run(["ip", "link", "set", self.inner_if, "up"])
            self.run(["ip", "route", "add", "default", "via", self.host_addr], check=False)
            # No IPv6 inside: keeps ICE candidates to the one address we chose.
            self.run(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"], check=False)
            self._wait_link_up()
        except BaseException:
            self.destroy()
            raise
        return self

    def _wait_link_up(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.run(["ip", "-o", "link", "show", self.inner_if], check=False).stdout
            if "LOWER_UP" in out:
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.inner_if} in {self.ns} did not come up")

    def destroy(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        deadline = time.monotonic() + 5
        for p in self._procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(2)
        self._procs = []
        if self._created:
            remove_namespace(self.ns)
            _run(["ip", "link", "del", self.host_if], check=False)
            self._created = False

    def __enter__(self) -> TestNetwork:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.destroy()

    # -- running things inside ----------------------------------------------------------------------------
    def argv(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` inside the namespace."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def popen(self, argv: Sequence[str], **kw) -> subprocess.Popen:
        """Start ``argv`` inside the namespace (``ip netns exec`` execs it: the Popen pid is the process).

        The process is killed by :meth:`destroy` if still running.
        """
        p = subprocess.Popen(self.argv(argv), **kw)
        self._procs.append(p)
        return p

    def run(self, argv: Sequence[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
        return _run(self.argv(argv), check=check, **kw)

    # -- impairments ------------------------------------------------------------------------------------
    def add_udp_loss(self, ports: int | str | Sequence[int], probability: float, *,
                     chain: str = "OUTPUT", match: str = "dport") -> Rule:
        """Drop UDP packets to the given destination port(s) with ``probability`` (0..1) inside the namespace.

        ``ports``: one port, a list, or a range string "5000:5010".  ``chain`` OUTPUT (default) affects
        packets sent by processes in the namespace (e.g. Janus's RTP forwarder toward the recorder); use
        ``match`` "sport" to select by source port.  Returns a :class:`Rule`; ``remove()`` deletes it.
        """
        if isinstance(ports, int):
            port_specs = [str(ports)]
        elif isinstance(ports, str):
            port_specs = [ports]
        else:
            port_specs = [str(p) for p in ports]
        rule = Rule(self)
        for spec in port_specs:
            comment = f"reel-test-{next(self._rule_ids)}"
            body = [chain, "-p", "udp", f"--{match}", spec, "-m", "statistic", "--mode", "random",
                    "--probability", f"{probability:.6f}", "-m", "comment", "--comment", comment,
                    "-j", "DROP"]
            self.run(["iptables", "-w", "-A", *body])
            rule.undo.append(["iptables", "-w", "-D", *body])
        return rule

    def udp_drop_counts(self, chain: str = "OUTPUT") -> dict[str, int]:
        """Packets dropped so far per loss rule (comment -> packets)."""
        out = self.run(["iptables", "-w", "-L", chain, "-v", "-n", "-x"]).stdout
        counts = {}
        for line in out.splitlines():
            m = re.search(r"/\* (reel-test-\d+) \*/", line)
            if m:
                counts[m.group(1)] = int(line.split()[0])
        return counts


def main() -> None:  # pragma: no cover - manual helper
    """``python -m tests.harness.netns cleanup``: remove namespaces left by crashed test runs."""
    import sys

    if sys.argv[1:] == ["cleanup"]:
        print("removed:", cleanup_stale())
    else:
        print("usage: python -m tests.harness.netns cleanup", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
