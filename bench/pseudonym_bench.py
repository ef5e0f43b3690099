"""Oblivious pseudonym evaluations per second, end to end, against the raw group-operation bound.

Usage: python bench/pseudonym_bench.py [--batches N] [--singles N] [--seed S]

End to end: normalise, hash to the group, blind, send the batch to both operators
over mTLS gRPC on loopback, each evaluates and proves (batched DLEQ), verify both
proofs and both signed keys, add, unblind, finalize. Operators run in this process
(same event loop, grpc's own threads), as real gRPC servers.

The bound, measured in the same run: the libsodium operations one evaluation
needs and nothing else — per element: 1 hash-to-group, 10 scalar
multiplications (blind, 2 evaluations, 2 composite terms at the operators,
4 composite terms in verification, unblind), 1 scalar inversion and 3 additions.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import rbcl
from common import edit_bundle, parse_args, report
from olievlek.cli.federation import DEFAULT_BUNDLE, operator_key_entry, provision_policy
from olievlek.node.pseudonym_client import PseudonymClient
from olievlek.node.store import NodeStore
from olievlek.pseudonymiser.config import PseudonymiserConfig
from olievlek.pseudonymiser.server import PseudonymiserServer
from olievlek.pseudonymiser.service import keygen
from olievlek.pseudonymiser.storage.store import PseudonymiserStore

from olievlek import logs, voprf
from olievlek.identity import OrgId, OrgIdentity, OrgKind
from olievlek.normalise import nrn_input
from olievlek.pki import CertificateAuthority
from olievlek.policy import Bundle
from olievlek.transport import TlsFiles
from olievlek.trust import TrustAnchor


def valid_numbers(n: int, rng: random.Random) -> list[str]:
    out = []
    while len(out) < n:
        yy, mm, dd, serial = rng.randrange(0, 100), rng.randrange(1, 13), rng.randrange(1, 29), rng.randrange(1, 998)
        first9 = f"{yy:02d}{mm:02d}{dd:02d}{serial:03d}"
        out.append(first9 + f"{97 - int(first9) % 97:02d}")
    return out


def raw_bound(n: int) -> float:
    """Elements per second if only the needed libsodium operations ran."""
    k = voprf.random_scalar()
    inputs = [os.urandom(64) for _ in range(n)]
    d = voprf.random_scalar()
    t0 = time.perf_counter()
    for u in inputs:


        p = bytes(rbcl.crypto_core_ristretto255_from_hash(u))
        r = voprf.random_scalar()
        b = voprf.mul(r, p)                       # blind
        e1, e2 = voprf.mul(k, b), voprf.mul(k, b)  # two operators evaluate
        voprf.mul(d, b)
        voprf.mul(d, b)                           # operators' composite terms
        for _ in range(4):
            voprf.mul(d, e1)                      # client's composite terms (M and Z, two proofs)
        total = voprf.add(e1, e2)
        voprf.add(total, e1)
        voprf.add(total, e2)
        voprf.mul(voprf.scalar_invert(r), total)  # unblind
    return n / (time.perf_counter() - t0)


async def setup(tmp: Path) -> tuple[list[PseudonymiserServer], PseudonymClient, NodeStore]:
    pki = tmp / "pki"
    ca = CertificateAuthority.init(pki)
    liaison = ca.issue_org(OrgIdentity(OrgKind.FEDERAL_LIAISON, OrgId("fed-liaison")))

    def unlimited(bundle: dict[str, Any]) -> None:
        bundle["pseudonymisation"]["budgets"]["federal_liaison"] = {"per_hour": 10_000_000, "per_day": 10_000_000,
                                                                   "batch": 1000}

    src = edit_bundle(DEFAULT_BUNDLE, tmp / "bundle-src", unlimited)
    points = []
    for share in (1, 2):  # each operator's routing share first: the bundle names their sum
        store = await PseudonymiserStore.open(tmp / f"op{share}.sqlite")
        points.append((await keygen(store, 1, 1)).public)
        await store.close()
    provision_policy(tmp / "federation", src, operator_keys=[
        operator_key_entry("routing", 1, points, [f"pseudonymiser/pseudonymiser-{s}" for s in (1, 2)])])
    bundle = Bundle.load(tmp / "federation" / "bundle")
    servers = []
    for share in (1, 2):
        server_creds = ca.issue_server(f"pseudonymiser-{share}", ["127.0.0.1"])
        org = ca.issue_org(OrgIdentity(OrgKind.PSEUDONYMISER, OrgId(f"pseudonymiser-{share}")))
        cfg = PseudonymiserConfig(
            org_id=f"pseudonymiser-{share}", share=share, listen="127.0.0.1:0",
            server_tls=TlsFiles(pki / "ca.pem", server_creds.tls_cert, server_creds.tls_key),
            client_tls=TlsFiles(pki / "ca.pem", org.tls_cert, org.tls_key), sign_cert=org.sign_cert,
            sign_key=org.sign_key, crl=pki / "crl.pem", bundle=tmp / "federation" / "bundle",
            roots=tmp / "federation" / "roots", database=tmp / f"op{share}.sqlite", broker=None,
            report_interval_s=3600, ready_file=None)
        server = PseudonymiserServer(cfg)
        await server.start()
        servers.append(server)
    node_store = await NodeStore.open(tmp / "node.sqlite")
    client = PseudonymClient([f"127.0.0.1:{s.port}" for s in servers],
                             TlsFiles(pki / "ca.pem", liaison.tls_cert, liaison.tls_key),
                             TrustAnchor.load(pki / "ca.pem", pki / "crl.pem"), node_store, bundle.pseudonymisation)
    return servers, client, node_store


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--singles", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--bound-ops", type=int, default=2000)
    args = parse_args(ap, {"batches": 1, "singles": 10, "bound_ops": 100})
    rng = random.Random(args.seed)
    logs.configure(json=True, level=logging.WARNING)
    print(f"seed {args.seed}; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as d:
        servers, client, node_store = await setup(Path(d))
        try:
            numbers = valid_numbers(1000, rng)
            await client.pseudonymise([nrn_input(numbers[0])])  # warm up channels, pin the key
            t0 = time.perf_counter()
            for n in numbers[: args.singles]:
                await client.pseudonymise([nrn_input(n)])
            singles = args.singles / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(args.batches):
                await client.pseudonymise([nrn_input(n) for n in numbers])
            batched = args.batches * 1000 / (time.perf_counter() - t0)
        finally:
            await client.close()
            await node_store.close()
            for s in servers:
                await s.stop()
    bound = raw_bound(args.bound_ops)
    print(f"single evaluations      {singles:>10,.0f}/s")
    print(f"batches of 1,000        {batched:>10,.0f}/s")
    print(f"raw group-ops bound     {bound:>10,.0f}/s   (same run, one core)")
    print(f"batch / bound           {batched / bound:>10.0%}   (goal >= 50%)")
    report("pseudonym", args.smoke, singles_per_s=round(singles), batched_per_s=round(batched),
           bound_per_s=round(bound), ratio=round(batched / bound, 3))


if __name__ == "__main__":
    asyncio.run(main())
