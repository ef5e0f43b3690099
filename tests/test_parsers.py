"""Every parser a caller reaches ends in a typed error or a value, never another exception.

Property tests (hypothesis, the CI profile registered in conftest: derandomized, no deadline, no database)
over the wire, local frames, bundle files and ``signatures.json``, the revocation list and the service
configurations; and, against a running node, frames drawn from a fixed, printed seed.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from olievlek.broker.config import BrokerConfig
from olievlek.broker.server import BrokerServer
from olievlek.node.config import NodeConfig
from olievlek.pseudonymiser.config import PseudonymiserConfig
from olievlek.witness.witness import WitnessConfig

from olievlek import envelope, wire
from olievlek.errors import OlievlekError, WireError
from olievlek.framing import FrameError, read_frame
from olievlek.pki import CertificateAuthority
from olievlek.policy import Bundle
from olievlek.policy.signing import load_roots, verify_bundle
from olievlek.trust import RevocationUnavailable, TrustAnchor
from olievlek.v1 import local_pb2

from .conftest import FLANDERS, NodeFactory
from .envelopes import body, seal_bytes

pytestmark = pytest.mark.timeout(300)
SEED = 20261207


def _valid_envelope() -> bytes:
    from olievlek.envelope import Signer
    from olievlek.identity import OrgId, OrgIdentity, OrgKind

    with tempfile.TemporaryDirectory() as d:
        ca = CertificateAuthority.init(Path(d))
        creds = ca.issue_org(OrgIdentity(OrgKind.MUNICIPALITY, OrgId("gent")))
        s = Signer.from_pem(creds.sign_key.read_bytes(), creds.sign_cert.read_bytes())
        return seal_bytes(wire.encode(body()), s)


VALID = _valid_envelope()


def _mutated() -> st.SearchStrategy[bytes]:
    """Random bytes, and the valid envelope with bytes flipped, cut, or inserted."""
    flips = st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)), min_size=1, max_size=8).map(
        lambda fs: bytes(b ^ dict(fs).get(i, 0) for i, b in enumerate(VALID)))
    cuts = st.integers(0, len(VALID)).map(lambda n: VALID[:n])
    inserts = st.tuples(st.integers(0, len(VALID)), st.binary(min_size=1, max_size=16)).map(
        lambda t: VALID[:t[0]] + t[1] + VALID[t[0]:])
    return st.one_of(st.binary(max_size=512), flips, cuts, inserts)


@settings(max_examples=300)
@given(_mutated())
def test_the_wire_parser_refuses_with_a_code_or_parses(raw: bytes) -> None:
    try:
        envelope.parse(raw)
    except WireError as exc:
        assert exc.refusal_code != 0


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_local_frames_are_read_or_refused(data: bytes) -> None:
    async def read() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        try:
            frame = await read_frame(reader, limit=32)
        except FrameError:
            return
        assert len(frame) <= 32
        try:
            local_pb2.LocalRequest.FromString(frame)
        except Exception as exc:  # the node turns exactly this into a "malformed" answer
            assert type(exc).__name__ == "DecodeError"

    asyncio.run(read())


_yaml_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.text(max_size=12)),
                            lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                            max_leaves=8)


@settings(max_examples=60)
@given(st.dictionaries(st.sampled_from(["name", "version", "expires", "format", "data_protection_officers",
                                        "witnesses", "directory", "monitoring", "pseudonymisation"]),
                       _yaml_values, max_size=5))
def test_a_broken_bundle_file_is_a_bundle_error(changes: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as d:
        bundle = Path(d) / "bundle"
        shutil.copytree(FLANDERS, bundle)
        meta = yaml.safe_load((bundle / "bundle.yaml").read_text())
        meta.update(changes)
        (bundle / "bundle.yaml").write_text(yaml.safe_dump(meta))
        try:
            Bundle.load(bundle)
        except OlievlekError:
            pass


@settings(max_examples=100)
@given(st.one_of(st.binary(max_size=200), _yaml_values.map(lambda v: __import__("json").dumps(v).encode())))
def test_a_broken_signatures_file_is_a_signature_error(content: bytes) -> None:
    from olievlek.cli.federation import provision_policy

    with tempfile.TemporaryDirectory() as d:
        fed = Path(d) / "federation"
        provision_policy(fed, FLANDERS)
        (fed / "bundle" / "signatures.json").write_bytes(content)
        with pytest.raises(OlievlekError):
            verify_bundle(fed / "bundle", load_roots(fed / "roots"))


_CA_DIR = Path(tempfile.mkdtemp(prefix="olv-parsers-ca-"))
CertificateAuthority.init(_CA_DIR)


@pytest.fixture(scope="module", autouse=True)
def _remove_ca() -> Iterator[None]:
    yield
    shutil.rmtree(_CA_DIR, ignore_errors=True)


@settings(max_examples=100)
@given(st.one_of(st.binary(max_size=300), st.integers(0, 600).map(
    lambda n: (_CA_DIR / "crl.pem").read_bytes()[:n])))
def test_a_broken_revocation_list_trusts_nobody_and_says_why(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        crl = Path(d) / "crl.pem"
        crl.write_bytes(content)
        anchor = TrustAnchor.load(_CA_DIR / "ca.pem", crl)
        try:
            anchor.crl.is_revoked(1)
        except RevocationUnavailable as exc:
            assert str(crl) in exc.message  # the service's own log names the file


@settings(max_examples=80)
@given(st.sampled_from([BrokerConfig, NodeConfig, PseudonymiserConfig, WitnessConfig]),
       st.one_of(_yaml_values, st.dictionaries(st.sampled_from(
           ["listen", "org_id", "kind", "broker", "share", "witnesses", "rate_limits", "users", "retention_days",
            "pseudonymisers", "max_clock_skew_s", "keepalive_s", "ca", "tls_cert", "tls_key", "database"]),
           _yaml_values, max_size=8)))
def test_a_broken_configuration_is_a_config_error(loader: type, doc: object) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "service.yaml"
        path.write_text(yaml.safe_dump(doc))
        try:
            loader.load(path)
        except OlievlekError:
            pass


async def test_random_frames_at_a_running_node_are_answered(broker: BrokerServer, nodes: NodeFactory) -> None:
    rng = random.Random(SEED)
    print(f"frame seed {SEED}")
    gent = await nodes.start("gent", broker.port)
    for _ in range(200):
        payload = rng.randbytes(rng.randrange(0, 64))
        reader, writer = await asyncio.open_unix_connection(str(gent.config.socket))
        writer.write(struct.pack(">I", len(payload)) + payload)
        await writer.drain()
        header = await reader.readexactly(4)
        answer = local_pb2.LocalResponse.FromString(await reader.readexactly(struct.unpack(">I", header)[0]))
        assert answer.WhichOneof("response") is not None
        if answer.WhichOneof("response") == "error":
            assert answer.error.code != "internal", answer
        writer.close()
