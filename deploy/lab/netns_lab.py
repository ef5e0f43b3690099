#!/usr/bin/env python3
"""A multi-host olievlek lab in Linux network namespaces, with a silent partition.

One namespace per organisation (the broker's site, Gent, Antwerpen), each with
its own address on a switch (a Linux bridge in a namespace of its own). The
broker, its witness and both pseudonymiser operators run in the broker's
namespace; each node runs in its organisation's namespace, so every gRPC call
between them crosses veth links and the switch. The lab then:

1. sends move alerts from Gent to Antwerpen and waits until they arrive;
2. cuts Antwerpen off silently (its switch port stops forwarding: no reset, no
   FIN, no ICMP) while Gent keeps sending alerts, for --partition-seconds;
3. heals the link, sends a few more, and waits until Antwerpen's inbox holds
   every alert Gent's outbox has as accepted by the broker, each exactly once.

It prints PASS or FAIL with counts and exits 0 or 1; 77 when this machine cannot
create network namespaces (not root, no iproute2, no permission). Run as root::

    .venv/bin/python deploy/lab/netns_lab.py --partition-seconds 40

Everything it creates (namespaces, links, processes) is removed on exit, also on
Ctrl-C, SIGTERM and its own overall timeout. See deploy/lab/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[2]

try:
    import yaml
    from olievlek.cli.federation import SHARES, WITNESS, Federation, NodeSpec
    from olievlek.cli.local_client import call
    from olievlek.cli.up import NIS

    from olievlek.errors import LocalApiError, OlievlekError
    from olievlek.pki import CertificateAuthority
    from olievlek.v1 import local_pb2
except ImportError:
    # Started with a Python that lacks the project: the services must run under the repo's venv
    # anyway (Federation starts them with sys.executable), so re-run the lab with it once.
    _venv = REPO / ".venv" / "bin" / "python"
    if _venv.exists() and not os.environ.get("OLIEVLEK_LAB_REEXEC"):
        os.environ["OLIEVLEK_LAB_REEXEC"] = "1"
        os.execv(_venv, [str(_venv), *sys.argv])  # noqa: S606 - argv as given, no shell
    raise

SKIP = 77  # the exit code test harnesses (automake, meson, our test) read as "skipped"
SENDER, RECIPIENT = "gent", "antwerpen"
SUBNET = "10.231.1"
HOSTS = {"broker": f"{SUBNET}.1", SENDER: f"{SUBNET}.11", RECIPIENT: f"{SUBNET}.12"}
PR_SET_PDEATHSIG = 1
BRIDGE_FORWARDING, BRIDGE_DISABLED = 3, 0


class CannotRun(Exception):
    """This machine cannot host the lab (exit 77), as opposed to the lab failing."""


class LabError(Exception):
    """The lab's own set-up failed."""


class LabTimeout(Exception):
    pass


def say(msg: str) -> None:
    print(msg, flush=True)


def run(cmd: list[str], *, check: bool = True, timeout: float = 30.0, **kw: Any) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and r.returncode != 0:
        raise LabError(f"`{' '.join(cmd)}` failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r


def _die_with_parent() -> None:
    """Children get SIGTERM if the lab dies, even by SIGKILL, instead of outliving their namespaces.

    The setting survives the exec of `ip netns exec` and then of Python (neither is set-uid).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


# -- network ----------------------------------------------------------------
@dataclass
class Network:
    """Namespaces, veth links and a switch; names are prefixed with the run id so runs never collide."""

    run_id: str
    created: list[str] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"{self.run_id}-{host}"

    @property
    def switch(self) -> str:
        return self.ns("net")

    def port(self, host: str) -> str:
        return f"p-{host}"[:15]  # interface names are at most 15 bytes

    def up(self) -> None:
        for name in [self.switch, *(self.ns(h) for h in HOSTS)]:
            r = run(["ip", "netns", "add", name], check=False)
            if r.returncode != 0:
                if not self.created:  # the very first one: this machine does not let us
                    raise CannotRun(f"`ip netns add` is not permitted here: {r.stderr.strip()}")
                raise LabError(f"ip netns add {name}: {r.stderr.strip()}")
            self.created.append(name)
            run(["ip", "-n", name, "link", "set", "lo", "up"])
        r = run(["ip", "-n", self.switch, "link", "add", "br0", "type", "bridge"], check=False)
        if r.returncode != 0:
            raise CannotRun(f"cannot create a bridge in a namespace: {r.stderr.strip()}")
        run(["ip", "-n", self.switch, "link", "set", "br0", "up"])
        macs: dict[str, str] = {}
        for host, addr in HOSTS.items():
            # Created directly inside the namespaces: no name ever exists in the root namespace.
            r = run(["ip", "link", "add", "eth0", "netns", self.ns(host), "type", "veth",
                     "peer", "name", self.port(host), "netns", self.switch], check=False)
            if r.returncode != 0:
                raise CannotRun(f"cannot create veth links between namespaces: {r.stderr.strip()}")
            run(["ip", "-n", self.switch, "link", "set", self.port(host), "master", "br0"])
            run(["ip", "-n", self.switch, "link", "set", self.port(host), "up"])
            run(["ip", "-n", self.ns(host), "addr", "add", f"{addr}/24", "dev", "eth0"])
            run(["ip", "-n", self.ns(host), "link", "set", "eth0", "up"])
            info = json.loads(run(["ip", "-j", "-n", self.ns(host), "link", "show", "eth0"]).stdout)
            macs[host] = info[0]["address"]
        # Static neighbours: with ARP, a host whose neighbour stays silent for a few seconds gets
        # "no route to host" from its own kernel, which a partition beyond the first router would
        # never produce. Without ARP, cut-off packets vanish and only timeouts remain, as on a WAN.
        for host in HOSTS:
            for other, addr in HOSTS.items():
                if other != host:
                    run(["ip", "-n", self.ns(host), "neigh", "replace", addr, "lladdr", macs[other],
                         "dev", "eth0", "nud", "permanent"])

    def set_forwarding(self, host: str, forwarding: bool) -> None:
        """Open or close one switch port.

        A disabled bridge port drops every frame in both directions inside the switch: both
        ends keep their link up (no carrier loss to notice) and nothing answers — no RST, no FIN,
        no ICMP. netem (`tc qdisc ... netem loss 100%`) would do the same at the host, but this
        kernel has no netem, nor nft/iptables binaries; `bridge` ships with iproute2.
        """
        state = BRIDGE_FORWARDING if forwarding else BRIDGE_DISABLED
        run(["bridge", "-n", self.switch, "link", "set", "dev", self.port(host), "state", str(state)])

    def cleanup(self) -> list[str]:
        problems = []
        for name in reversed(self.created):
            # Anything still inside was started by this run; it must not outlive the namespace.
            pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            r = run(["ip", "netns", "del", name], check=False)
            if r.returncode != 0:
                problems.append(f"ip netns del {name}: {r.stderr.strip()}")
        self.created.clear()
        return problems


# -- the federation, placed in the namespaces ---------------------------------------
@dataclass
class NetnsFederation(Federation):
    """Federation's PKI, bundle and configs, with every process started in its host's namespace.

    Federation writes loopback addresses; here every server (broker, pseudonymisers) lives
    in the broker's namespace, so each configuration is rewritten just before its process
    starts: 127.0.0.1 becomes the broker host's address, and listeners bind to it.
    """

    namespaces: dict[str, str] = field(default_factory=dict)  # process name -> namespace
    server_ip: str = HOSTS["broker"]

    def create(self) -> None:
        super().create()
        # Federation's server certificates name only localhost/127.0.0.1; clients here dial the
        # broker host's address, and TLS checks the certificate against exactly that.
        ca = CertificateAuthority.load(self.pki)
        for name in ("broker", WITNESS, *(f"pseudonymiser-{s}" for s in SHARES)):
            ca.issue_server(name, ["localhost", "127.0.0.1", self.server_ip])

    def _rehost(self, value: object) -> object:
        if isinstance(value, str) and value.startswith("127.0.0.1:"):
            return f"{self.server_ip}:{value.split(':', 1)[1]}"
        if isinstance(value, str) and value.startswith("https://127.0.0.1:"):  # the witness the broker pushes to
            return f"https://{self.server_ip}:{value.split(':', 2)[2]}"
        if isinstance(value, list):
            return [self._rehost(v) for v in value]
        if isinstance(value, dict):
            return {k: self._rehost(v) for k, v in value.items()}
        return value

    def _relocate(self, config: Path) -> None:
        doc = self._rehost(yaml.safe_load(config.read_text()))
        config.write_text(yaml.safe_dump(doc, sort_keys=False))

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        if "--config" in args:
            self._relocate(Path(args[args.index("--config") + 1]))
        ns = self.namespaces.get(name, self.namespaces["broker"])
        with self.log(name).open("ab") as logf:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "olievlek", *args],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, cwd=self.workdir,
                # Own session: a Ctrl-C in the terminal reaches only the lab, which then stops
                # nodes before the broker, instead of every process dying at once.
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        self.procs[name] = proc
        return proc

    def shutdown(self, grace: float = 10.0) -> None:
        """Nodes first (they drain in-flight acks), then the rest; bounded by two graces."""
        nodes = {s.org_id for s in self.nodes}
        for group in ([n for n in self.procs if n in nodes], [n for n in self.procs if n not in nodes]):
            procs = [self.procs.pop(n) for n in group]
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            deadline = time.monotonic() + grace
            for p in procs:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


# -- the scenario -------------------------------------------------------------
def national_number(i: int) -> str:
    """A valid but invented number (mod-97, pre-2000 rule), a different serial per alert."""
    first9 = f"850730{i + 1:03d}"
    return f"{first9}{97 - int(first9) % 97:02d}"


def is_org(value: str, org: str) -> bool:
    return value == org or value.endswith(f"/{org}")


@dataclass
class Lab:
    net: Network
    fed: NetnsFederation
    partition_s: float
    before: int
    after: int
    deliver_timeout_s: float
    outcomes: list[str] = field(default_factory=list)

    def cli(self, org: str, args: list[str], stdin: str = "") -> str:
        """The regisseur's CLI on the organisation's own host; identities go in on stdin only."""
        # One line per message, no wrapping; English, because this script reads the answers (a regisseur's
        # default is Dutch).
        env = {**os.environ, "COLUMNS": "240", "NO_COLOR": "1", "OLIEVLEK_LANG": "en"}
        r = run(["ip", "netns", "exec", self.net.ns(org), sys.executable, "-m", "olievlek", *args,
                 "--socket", str(self.fed.socket(org))], input=stdin, env=env, timeout=60, check=False)
        return " ".join((r.stdout + r.stderr).split())

    def send_alert(self) -> str:
        i = len(self.outcomes)
        identity = {"national_number": national_number(i), "given_names": "Lab", "family_name": f"Persoon {i}"}
        text = self.cli(SENDER, ["case", "open", "--phase", "follow-up", "--concern", "polarisation",
                                 "--risk", "medium"], json.dumps(identity))
        m = re.search(r"case (\d+) opened", text)
        if not m:
            outcome = f"case-open-failed: {text[:200]}"
        else:
            text = self.cli(SENDER, ["alert", "move", "--case", m.group(1), "--to", str(NIS[RECIPIENT])])
            if "accepted by the broker" in text:
                outcome = "accepted"
            elif "awaiting witnesses" in text:  # answered; final once the witnesses cosign (checked below)
                outcome = "awaiting"
            elif "queued" in text:
                outcome = "queued"
            elif "refused" in text:
                outcome = f"refused: {text[:200]}"
            else:
                outcome = f"error: {text[:200]}"
        self.outcomes.append(outcome)
        return outcome

    def inbox(self) -> list[local_pb2.InboxItem]:
        req = local_pb2.LocalRequest(inbox_list=local_pb2.InboxListRequest())
        return [i for i in call(self.fed.socket(RECIPIENT), req).inbox_list.items if is_org(i.sender, SENDER)]

    def outbox(self) -> list[local_pb2.OutboxItem] | None:
        """Gent's outbox entries for Antwerpen; None when this node version has no outbox listing."""
        req = local_pb2.LocalRequest(outbox_list=local_pb2.OutboxListRequest())
        try:
            items = call(self.fed.socket(SENDER), req).outbox_list.items
        except LocalApiError as exc:
            if exc.remote_code == "unknown_request":
                return None
            raise
        return [i for i in items if is_org(i.recipient, RECIPIENT)]

    def wait_for(self, pred: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.25)
        return pred()

    def stream_events(self, since: float) -> dict[str, int]:
        """How Antwerpen's node saw its broker stream (JSON log lines), for the summary."""
        counts: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in self.fed.log(RECIPIENT).read_text().splitlines():
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    ev = str(rec.get("event", ""))
                    if ev.startswith("stream.") and _log_time(rec) >= since:
                        counts[ev] = counts.get(ev, 0) + 1
        return counts

    def run(self) -> int:
        failures: list[str] = []
        say(f"before: Gent sends {self.before} alert(s) to Antwerpen over a healthy network")
        for _ in range(self.before):
            say(f"  alert {len(self.outcomes) + 1}: {self.send_alert()}")
        if not self.wait_for(lambda: len(self.inbox()) >= self.before, 30):
            failures.append(f"before the partition only {len(self.inbox())} of {self.before} alerts arrived")
        baseline = len(self.inbox())
        say(f"  Antwerpen's inbox holds {baseline}")

        self.net.set_forwarding(RECIPIENT, False)
        t_part, wall_part = time.monotonic(), time.time()
        say(f"partition: Antwerpen's switch port disabled (silent drop both ways) for {self.partition_s:.0f} s")
        during, last = 0, 0.0
        # Stop starting alerts that would end after the partition should: it is held N s, not N + one alert.
        while time.monotonic() - t_part + last < self.partition_s or during == 0:
            during += 1
            t_send = time.monotonic()
            say(f"  alert {len(self.outcomes) + 1} during the partition: {self.send_alert()}")
            last = time.monotonic() - t_send
        leaked = len(self.inbox()) - baseline
        time.sleep(max(0.0, self.partition_s - (time.monotonic() - t_part)))
        leaked = max(leaked, len(self.inbox()) - baseline)
        if leaked:
            failures.append(f"{leaked} alert(s) reached Antwerpen during the partition: it did not hold")
        held = time.monotonic() - t_part
        self.net.set_forwarding(RECIPIENT, True)
        t_heal = time.monotonic()
        say(f"healed after {held:.1f} s; Antwerpen's inbox still held {baseline + leaked}")

        for _ in range(self.after):
            say(f"  alert {len(self.outcomes) + 1} after healing: {self.send_alert()}")

        def complete() -> bool:
            out = self.outbox()
            accepted = sum(1 for o in self.outcomes if o == "accepted") if out is None else \
                sum(1 for i in out if i.status == local_pb2.OUTBOX_STATUS_ACCEPTED)
            pending = out is not None and any(i.status in (local_pb2.OUTBOX_STATUS_PENDING,
                                                            local_pb2.OUTBOX_STATUS_QUEUED)
                                              or i.confirmation != local_pb2.CONFIRMATION_FINAL for i in out)
            return not pending and len(self.inbox()) >= accepted

        delivered = self.wait_for(complete, self.deliver_timeout_s)
        t_done = time.monotonic() - t_heal
        time.sleep(2.0)  # a late duplicate would show up now

        out = self.outbox()
        items = self.inbox()
        sent = len(self.outcomes)
        cli_accepted = sum(1 for o in self.outcomes if o == "accepted")
        statuses: dict[str, int] = {}
        for o in out or []:
            name = local_pb2.OutboxStatus.Name(o.status).removeprefix("OUTBOX_STATUS_").lower()
            statuses[name] = statuses.get(name, 0) + 1
        accepted = cli_accepted if out is None else statuses.get("accepted", 0)
        pseudonyms = [bytes(i.summary.subject_pseudonym) for i in items]
        distinct = len(set(pseudonyms))
        failures += [f"alert {n + 1}: {o}" for n, o in enumerate(self.outcomes)
                     if o not in ("accepted", "awaiting", "queued")]
        unfinal = [o.outbox_id for o in out or [] if o.confirmation != local_pb2.CONFIRMATION_FINAL]
        if unfinal:
            failures.append(f"outbox entries {unfinal} are not final (the witnesses did not cover them)")
        if out is not None and len(out) != sent:
            failures.append(f"Gent's outbox has {len(out)} entries for Antwerpen, {sent} alerts were sent")
        if accepted != sent:
            failures.append(f"only {accepted} of {sent} alerts are accepted in Gent's outbox ({statuses})")
        if not delivered:
            failures.append(f"not all delivered within {self.deliver_timeout_s:.0f} s of healing")
        if len(items) != accepted:
            failures.append(f"Antwerpen holds {len(items)} items from Gent, Gent's outbox accepted {accepted}")
        if distinct != len(items):
            failures.append(f"{len(items) - distinct} duplicate item(s) in Antwerpen's inbox")

        say(f"delivery after healing took {t_done:.1f} s; Antwerpen's stream events since the partition: "
            f"{self.stream_events(wall_part) or 'none logged'}")
        source = "outbox listing" if out is not None else "CLI answers (this node has no outbox listing)"
        counts = (f"sent {sent} (before {self.before}, during {during}, after {self.after}); "
                  f"Gent's outbox: {accepted} accepted [{source}]; Antwerpen's inbox: {len(items)} items, "
                  f"{distinct} distinct, {len(items) - distinct} duplicate(s), "
                  f"{max(0, accepted - distinct)} missing; partition {held:.1f} s")
        if failures:
            say(f"FAIL: {counts}")
            for f in failures:
                say(f"  - {f}")
            return 1
        say(f"PASS: {counts}")
        return 0


def _log_time(rec: dict[str, Any]) -> float:
    ts = rec.get("timestamp")
    if isinstance(ts, str):
        with contextlib.suppress(ValueError):
            return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    return float("inf")  # undated lines count: better a spurious event than a hidden one


def preflight() -> str | None:
    if sys.platform != "linux":
        return f"network namespaces need Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    for tool in ("ip", "bridge"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    return None


@contextlib.contextmanager
def signals_raise(timeout_s: float) -> Iterator[None]:
    """SIGTERM and the overall timeout unwind like Ctrl-C does, so the finally clean-up runs."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise LabTimeout

    # Also SIGINT: a shell starts background jobs with it ignored, and Python keeps that.
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    old_term = signal.signal(signal.SIGTERM, on_term)
    old_alarm = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alarm)
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--partition-seconds", type=float, default=40.0,
                    help="how long Antwerpen is cut off (default 40: longer than the nodes' keepalive detection)")
    ap.add_argument("--before", type=int, default=2, help="alerts sent before the partition")
    ap.add_argument("--after", type=int, default=2, help="alerts sent after healing")
    ap.add_argument("--deliver-timeout", type=float, default=90.0,
                    help="seconds after healing for every alert to arrive")
    ap.add_argument("--keepalive-seconds", type=float, default=None,
                    help="node keepalive interval and timeout (default: the nodes' own); short values let a "
                         "short partition exercise dead-stream detection")
    ap.add_argument("--timeout", type=float, default=None,
                    help="overall limit in seconds (default: 120 + partition + deliver timeout)")
    ap.add_argument("--keep-workdir", action="store_true", help="keep logs and databases even on PASS")
    args = ap.parse_args(argv)

    reason = preflight()
    if reason:
        say(f"SKIP: the netns lab cannot run here: {reason}")
        return SKIP

    run_id = f"olv-{os.getpid()}"
    net = Network(run_id)
    workdir = Path(tempfile.mkdtemp(prefix=f"{run_id}-lab-"))
    node_settings: dict[str, object] = {}
    broker_settings: dict[str, object] = {}
    if args.keepalive_seconds:
        k = args.keepalive_seconds
        # The broker must accept pings at the nodes' rate, or it answers with GOAWAY too_many_pings.
        node_settings = {"keepalive_s": k, "keepalive_timeout_s": k}
        broker_settings = {"min_ping_interval_s": k / 2}
    fed = NetnsFederation(
        workdir, nodes=(NodeSpec(SENDER), NodeSpec(RECIPIENT)),
        namespaces={"broker": net.ns("broker"), SENDER: net.ns(SENDER), RECIPIENT: net.ns(RECIPIENT)},
        node_settings=node_settings, broker_settings=broker_settings,
    )
    timeout = args.timeout or 120.0 + args.partition_seconds + args.deliver_timeout
    code = 1
    started = time.monotonic()
    try:
        with signals_raise(timeout):
            try:
                try:
                    net.up()
                except CannotRun as exc:
                    say(f"SKIP: the netns lab cannot run here: {exc}")
                    code = SKIP
                    return code
                say(f"lab {run_id}: " + ", ".join(f"{h} {a} (netns {net.ns(h)})" for h, a in HOSTS.items())
                    + f"; switch in {net.switch}; workdir {workdir}")
                fed.create()
                fed.start()
                say(f"federation up in {time.monotonic() - started:.1f} s: broker {fed.server_ip}:{fed.broker_port}, "
                    f"witness and 2 pseudonymisers in {net.ns('broker')}, nodes {SENDER} and {RECIPIENT}")
                lab = Lab(net, fed, args.partition_seconds, args.before, args.after, args.deliver_timeout)
                code = lab.run()
            except LabTimeout:
                say(f"FAIL: the lab did not finish within its overall timeout of {timeout:.0f} s")
                code = 1
            except KeyboardInterrupt:
                say("interrupted; cleaning up")
                code = 130
            except (LabError, OlievlekError, subprocess.TimeoutExpired) as exc:
                say(f"FAIL: {exc}")
                code = 1
            finally:
                # A second Ctrl-C or a late alarm must not cut the clean-up short.
                old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.setitimer(signal.ITIMER_REAL, 0)
                problems: list[str] = []
                try:
                    fed.shutdown()
                finally:
                    problems = net.cleanup()
                    signal.signal(signal.SIGINT, old_int)
                for p in problems:
                    say(f"clean-up: {p}")
                if code == 0 and not args.keep_workdir:
                    shutil.rmtree(workdir, ignore_errors=True)
                elif code != SKIP:
                    say(f"logs and databases kept in {workdir}")
                else:
                    shutil.rmtree(workdir, ignore_errors=True)
    finally:
        say(f"lab finished in {time.monotonic() - started:.1f} s with exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
