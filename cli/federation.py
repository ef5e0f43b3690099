"""A whole local federation on loopback: dev PKI, configs, broker and nodes as processes.

Used by ``olievlek up`` and by the end-to-end tests. Every server binds port
0 and reports its port through a ready file, so two federations never
collide; sockets and files live in a fresh work directory.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek import voprf
from olievlek.audit.checkpoint import origin_for
from olievlek.errors import ConfigError
from olievlek.fieldcrypt import KeyEncryptionKey
from olievlek.identity import OrgId, OrgIdentity, OrgKind
from olievlek.pki import CertificateAuthority, load_cert
from olievlek.policy import bundle_name
from olievlek.policy.signing import keygen, load_signing_key, make_root, sign_bundle

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = REPO / "policies" / "flanders"
READY_TIMEOUT_S = 30.0
SHARES = (1, 2)
WITNESS = "vvsg-witness"  # VVSG runs the demo's witness (as witness/vvsg-witness)
WITNESS_KEY_NAME = "witness.vvsg.be/olievlek"


def witness_entry(identity: OrgIdentity, key_name: str, sign_cert: Path) -> dict[str, str]:
    """A bundle ``witnesses.members`` entry for a witness whose cosigning key is its signing certificate's."""
    key = load_cert(sign_cert).public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{sign_cert}: a witness cosigns with an Ed25519 key")
    return {"identity": str(identity), "key_name": key_name, "key": key.public_bytes_raw().hex()}


def _modes_from_umask(top: Path) -> None:
    """copytree copies the folders' modes from the source; give them the ones this process creates with."""
    umask = os.umask(0)
    os.umask(umask)
    for folder in [top, *(p for p in top.rglob("*") if p.is_dir())]:
        folder.chmod(0o777 & ~umask)


def operator_key_entry(domain: str, epoch: int, points: Sequence[bytes], holders: Sequence[str]) -> dict[str, object]:
    """A bundle ``pseudonymisation.keys`` entry: the combined key K1 + K2 of one domain and epoch, from the
    public points the two operators published, and the identities holding share 1 and share 2."""
    return {"domain": domain, "epoch": epoch, "key": voprf.add(points[0], points[1]).hex(),
            "share1": holders[0], "share2": holders[1]}


def provision_policy(fed: Path, bundle_src: Path, admins: int = 2, threshold: int = 2,
                     witnesses: list[dict[str, str]] | None = None,
                     operator_keys: list[dict[str, object]] | None = None) -> Path:
    """Development trust for a federation: admin keys, root v1 (m-of-n), the bundle signed by all.

    ``witnesses`` (``witness_entry``) become the bundle's witness members and ``operator_keys``
    (``operator_key_entry``) its pseudonymisation keys, before it is signed.
    Returns the bundle directory. In production each administrator keeps their own key.
    """
    bundle = fed / "bundle"
    shutil.copytree(bundle_src, bundle, ignore=shutil.ignore_patterns("signatures.json"),
                    copy_function=shutil.copyfile)  # the process's umask decides the modes, not the source's
    _modes_from_umask(bundle)
    if witnesses or operator_keys:
        meta = bundle / "bundle.yaml"
        doc = yaml.safe_load(meta.read_text())
        if witnesses:
            doc["witnesses"] = {"quorum": doc.get("witnesses", {}).get("quorum", 1), "members": witnesses}
        if operator_keys:
            doc["pseudonymisation"]["keys"] = operator_keys
        meta.write_text(yaml.safe_dump(doc, sort_keys=False))
    for i in range(1, admins + 1):
        keygen(fed / "admins" / f"admin{i}")
    keys = [load_signing_key(fed / "admins" / f"admin{i}.key") for i in range(1, admins + 1)]
    root = make_root(1, dt.datetime.now(dt.UTC) + dt.timedelta(days=365), threshold,
                     [k.public_key() for k in keys], keys)
    (fed / "roots").mkdir(parents=True, exist_ok=True)
    (fed / "roots" / "1.root.json").write_text(json.dumps(root, indent=2))
    for k in keys[:threshold]:
        sign_bundle(bundle, k)
    return bundle


@dataclass(frozen=True, slots=True)
class NodeSpec:
    org_id: str
    kind: OrgKind = OrgKind.MUNICIPALITY


DEMO_NODES = (NodeSpec("gent"), NodeSpec("antwerpen"), NodeSpec("leuven"),
              NodeSpec("jh-antwerpen", OrgKind.JUSTICE_HOUSE), NodeSpec("fed-liaison", OrgKind.FEDERAL_LIAISON),
              NodeSpec("vvsg", OrgKind.MONITOR))
# A querying organisation names the legal basis of each query by one of its configured codes.
LIAISON_BASIS = "law-30-07-2018-art5"


@dataclass
class Federation:
    """Files and processes of one local federation."""

    workdir: Path
    nodes: tuple[NodeSpec, ...] = DEMO_NODES
    bundle_src: Path = DEFAULT_BUNDLE
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    broker_port: int = 0
    pseudonymiser_ports: list[int] = field(default_factory=list)
    witness_port: int = 0
    # Extra settings merged into every broker / node configuration (tests: keepalive, limits).
    broker_settings: dict[str, object] = field(default_factory=dict)
    # Broker instances over one database (its storage must be PostgreSQL for more than one): "broker",
    # "broker-2", ...; every node and operator is given all their addresses.
    broker_instances: int = 1
    broker_ports: dict[str, int] = field(default_factory=dict)
    node_settings: dict[str, object] = field(default_factory=dict)

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    def socket(self, org_id: str) -> Path:
        return self.workdir / org_id / "node.sock"

    def node_dir(self, org_id: str) -> Path:
        return self.workdir / org_id

    @property
    def broker_dir(self) -> Path:
        return self.workdir / "broker"

    def log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    # -- set-up ----------------------------------------------------------
    def create(self) -> None:
        """Dev PKI, bundle, keys and configuration files."""
        ca = CertificateAuthority.init(self.pki)
        ca.issue_server("broker", ["localhost", "127.0.0.1"])
        for spec in self.nodes:
            ca.issue_org(OrgIdentity(spec.kind, OrgId(spec.org_id)))
        witness = ca.issue_org(OrgIdentity(OrgKind.WITNESS, OrgId(WITNESS)))
        ca.issue_server(WITNESS, ["localhost", "127.0.0.1"])  # its tlog-witness HTTPS endpoint
        for share in SHARES:
            ca.issue_server(f"pseudonymiser-{share}", ["localhost", "127.0.0.1"])
            ca.issue_org(OrgIdentity(OrgKind.PSEUDONYMISER, OrgId(f"pseudonymiser-{share}")))
        for spec in self.nodes:  # each node's key-encryption key, outside its database
            KeyEncryptionKey.generate(self.node_dir(spec.org_id) / "kek.hex")
        fed = self.workdir / "federation"
        provision_policy(fed, self.bundle_src, witnesses=[
            witness_entry(OrgIdentity(OrgKind.WITNESS, OrgId(WITNESS)), WITNESS_KEY_NAME, witness.sign_cert)],
            operator_keys=self.operator_keygen())
        keygen(self.broker_dir / "log")  # the broker's tree-head key; nodes get log.pub
        (self.workdir / "logs").mkdir(exist_ok=True)
        self._write(self.broker_dir / "broker.yaml", {
            "listen": "127.0.0.1:0",
            "ca": str(self.pki / "ca.pem"),
            "crl": str(self.pki / "crl.pem"),
            "tls_cert": str(self.pki / "servers/broker/tls.pem"),
            "tls_key": str(self.pki / "servers/broker/tls.key"),
            "bundle": str(fed / "bundle"),
            "roots": str(fed / "roots"),
            "database": "broker.sqlite",
            "log_key": "log.key",
            "ready_file": "ready",
            **self.broker_settings,
        })

    def _write(self, path: Path, doc: dict[str, object]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))

    def write_node_config(self, spec: NodeSpec) -> Path:
        org = self.pki / "orgs" / spec.org_id
        path = self.node_dir(spec.org_id) / "node.yaml"
        self._write(path, {
            "org_id": spec.org_id,
            "kind": spec.kind.value,
            "broker": self._broker_addresses(),
            "ca": str(self.pki / "ca.pem"),
            "crl": str(self.pki / "crl.pem"),
            "tls_cert": str(org / "tls.pem"),
            "tls_key": str(org / "tls.key"),
            "sign_cert": str(org / "sign.pem"),
            "sign_key": str(org / "sign.key"),
            "bundle": str(self.workdir / "federation" / "bundle"),
            "roots": str(self.workdir / "federation" / "roots"),
            "pseudonymisers": [f"127.0.0.1:{p}" for p in self.pseudonymiser_ports],
            "log_public_key": str(self.broker_dir / "log.pub"),
            "witness_quorum": 1,  # the witnesses themselves come from the bundle
            "database": "node.sqlite",
            "socket": "node.sock",
            "kek_file": "kek.hex",
            # The developer running the federation is each node's regisseur (and, running the node,
            # its administrator).
            "users": [{"uid": os.getuid(), "role": "regisseur"}],
            "ready_file": "ready",
            **({"retention_days": {LIAISON_BASIS: 90}} if spec.kind == OrgKind.FEDERAL_LIAISON else {}),
            **self.node_settings,
        })
        return path

    # -- processes -------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with self.log(name).open("ab") as logf:
            proc = subprocess.Popen(
                [sys.executable, "-m", "olievlek", *args],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, cwd=self.workdir,
            )
        self.procs[name] = proc
        return proc

    def _await_ready(self, name: str, ready: Path) -> int:
        deadline = time.monotonic() + READY_TIMEOUT_S
        proc = self.procs[name]
        while time.monotonic() < deadline:
            if ready.exists():
                return int(ready.read_text().strip() or 0)
            if proc.poll() is not None:
                raise ConfigError(f"{name} exited with {proc.returncode}; see {self.log(name)}")
            time.sleep(0.05)
        raise ConfigError(f"{name} did not become ready within {READY_TIMEOUT_S:.0f} s; see {self.log(name)}")

    @property
    def broker_names(self) -> list[str]:
        return ["broker", *(f"broker-{i}" for i in range(2, self.broker_instances + 1))]

    def _broker_addresses(self) -> str | list[str]:
        ports = [self.broker_ports.get(n, 0) for n in self.broker_names]
        return f"127.0.0.1:{ports[0]}" if len(ports) == 1 else [f"127.0.0.1:{p}" for p in ports]

    def start_broker(self, name: str = "broker") -> int:
        """Start a broker instance; after its first start it keeps its port, so a restart is where nodes look.
        Another instance than the first runs the first's configuration (same database and log key) in a
        folder of its own."""
        folder = self.workdir / name
        config = folder / "broker.yaml"
        if name != "broker":
            doc = yaml.safe_load((self.broker_dir / "broker.yaml").read_text())
            port = self.broker_ports.get(name, 0)
            self._write(config, {**doc, "listen": f"127.0.0.1:{port}", "log_key": str(self.broker_dir / "log.key"),
                                 "instance_name": name})
        ready = folder / "ready"
        ready.unlink(missing_ok=True)
        self._spawn(name, ["broker", "serve", "--config", str(config)])
        port = self.broker_ports[name] = self._await_ready(name, ready)
        if name == "broker":
            self.broker_port = port
        doc = yaml.safe_load(config.read_text())
        if doc["listen"].endswith(":0"):
            self._write(config, {**doc, "listen": f"127.0.0.1:{port}"})
        return port

    def kill(self, name: str) -> None:
        """SIGKILL, as a power cut: no cleanup, no flush."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait()

    def spec(self, org_id: str) -> NodeSpec:
        return next(s for s in self.nodes if s.org_id == org_id)

    def start_node(self, spec: NodeSpec) -> None:
        config = self.write_node_config(spec)
        ready = self.node_dir(spec.org_id) / "ready"
        ready.unlink(missing_ok=True)
        self._spawn(spec.org_id, ["node", "serve", "--config", str(config)])
        self._await_ready(spec.org_id, ready)

    def operator_dir(self, share: int) -> Path:
        return self.workdir / f"pseudonymiser-{share}"

    def write_operator_config(self, share: int) -> Path:
        server = self.pki / "servers" / f"pseudonymiser-{share}"
        org = self.pki / "orgs" / f"pseudonymiser-{share}"
        path = self.operator_dir(share) / "pseudonymiser.yaml"
        self._write(path, {
            "org_id": f"pseudonymiser-{share}", "share": share, "listen": "127.0.0.1:0",
            "ca": str(self.pki / "ca.pem"), "crl": str(self.pki / "crl.pem"),
            "tls_cert": str(server / "tls.pem"), "tls_key": str(server / "tls.key"),
            "client_cert": str(org / "tls.pem"), "client_key": str(org / "tls.key"),
            "sign_cert": str(org / "sign.pem"), "sign_key": str(org / "sign.key"),
            "bundle": str(self.workdir / "federation" / "bundle"),
            "roots": str(self.workdir / "federation" / "roots"),
            "database": "pseudonymiser.sqlite", "broker": self._broker_addresses(),
            "report_interval_s": 5, "ready_file": "ready",
        })
        return path

    def operator_keygen(self) -> list[dict[str, object]]:
        """Each operator generates its own shares (as on its own host) and publishes the public points; the
        bundle names their sums and who holds which share (``docs/pseudonymisation.md``)."""
        points: dict[str, list[bytes]] = {}
        for share in SHARES:
            config = self.write_operator_config(share)
            for domain in ("routing", "monitoring"):
                r = subprocess.run([sys.executable, "-m", "olievlek", "pseudonymiser", "keygen", "--config",
                                    str(config), "--domain", domain, "--epoch", "1"], capture_output=True,
                                   text=True, timeout=60, check=False, cwd=self.workdir)
                found = re.search(r"\b[0-9a-f]{64}\b", r.stdout)
                if r.returncode != 0 or found is None:
                    raise ConfigError(f"keygen for share {share} failed: {r.stderr.strip()}")
                points.setdefault(domain, []).append(bytes.fromhex(found.group()))
        holders = [f"{OrgKind.PSEUDONYMISER.value}/pseudonymiser-{share}" for share in SHARES]
        return [operator_key_entry(domain, 1, p, holders) for domain, p in points.items()]

    def start_pseudonymisers(self) -> list[int]:
        """Serve each operator's shares (generated by ``create``)."""
        self.pseudonymiser_ports = []
        for share in SHARES:
            config = self.write_operator_config(share)
            ready = self.operator_dir(share) / "ready"
            ready.unlink(missing_ok=True)
            self._spawn(f"pseudonymiser-{share}", ["pseudonymiser", "serve", "--config", str(config),
                                                   "--share", str(share)])
            self.pseudonymiser_ports.append(self._await_ready(f"pseudonymiser-{share}", ready))
        return self.pseudonymiser_ports

    def start_witness(self) -> int:
        """The witness (tlog-witness over HTTPS), before the broker: the broker pushes to where it listens."""
        org, server = self.pki / "orgs" / WITNESS, self.pki / "servers" / WITNESS
        folder = self.workdir / "witness"
        path = folder / "witness.yaml"
        self._write(path, {
            "org_id": WITNESS, "key_name": WITNESS_KEY_NAME, "sign_key": str(org / "sign.key"),
            "logs": [{"origin": origin_for(bundle_name(self.bundle_src)), "key": str(self.broker_dir / "log.pub")}],
            "listen": "127.0.0.1:0", "server_cert": str(server / "tls.pem"), "server_key": str(server / "tls.key"),
            "database": "witness.sqlite", "ready_file": "ready",
        })
        (folder / "ready").unlink(missing_ok=True)
        self._spawn("witness", ["witness", "run", "--config", str(path)])
        self.witness_port = self._await_ready("witness", folder / "ready")
        config = self.broker_dir / "broker.yaml"
        doc = yaml.safe_load(config.read_text())
        self._write(config, {**doc, "witness_push": [
            {"identity": f"witness/{WITNESS}", "url": f"https://127.0.0.1:{self.witness_port}"}],
            "push_interval_s": 0.5})
        return self.witness_port

    def start(self) -> None:
        self.start_witness()
        for name in self.broker_names:
            self.start_broker(name)
        self.start_pseudonymisers()
        for spec in self.nodes:
            self.start_node(spec)

    def stop_process(self, name: str, timeout: float = 10.0) -> int:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop(self) -> None:
        """Stop nodes first, then the brokers, then the witness they push to (graceful SIGTERM, then SIGKILL)."""
        last = [n for n in (*self.broker_names, "witness") if n in self.procs]
        for name in [n for n in self.procs if n not in last] + last:
            self.stop_process(name)
