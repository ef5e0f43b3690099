"""``olievlek pseudonymiser``: run one operator's share, generate and refresh it.

Procedure (docs/pseudonymisation.md): each operator runs ``keygen`` on its own
host; nobody ever holds both shares. ``refresh`` moves a random delta from one
share to the other (operator 1 ``--delta-out``, operator 2 ``--delta-in``), so
k1 + k2 and every pseudonym stay the same. A real key change is a new epoch:
``keygen --epoch N+1`` on both, after which holders re-register.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
import yaml

from olievlek import logs, voprf
from olievlek.errors import ConfigError
from olievlek.lifecycle import private_files

from .console import out

app = typer.Typer(help="One operator of the oblivious pseudonymisation.", no_args_is_help=True)

DOMAINS = {"routing": 1, "monitoring": 2}
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", exists=True, help="Operator configuration (YAML).")]
ShareOpt = Annotated[int | None, typer.Option("--share", help="Which share this operator holds (1 or 2).")]
DomainOpt = Annotated[str, typer.Option("--domain", help="routing or monitoring.")]


def _domain(name: str) -> int:
    if name not in DOMAINS:
        raise typer.BadParameter(f"choose one of {', '.join(DOMAINS)}", param_hint="--domain")
    return DOMAINS[name]


@app.command("serve")
def serve(config: ConfigOpt, share: ShareOpt = None) -> None:
    """Serve evaluations (mTLS gRPC) and push signed counts to the broker, until SIGINT/SIGTERM."""
    from olievlek.pseudonymiser.config import PseudonymiserConfig
    from olievlek.pseudonymiser.server import serve as run

    logs.configure(json=True)
    private_files()
    asyncio.run(run(PseudonymiserConfig.load(config, share)))


async def _with_store(config: Path, share: int | None, fn: object) -> object:
    from olievlek.pseudonymiser.config import PseudonymiserConfig
    from olievlek.pseudonymiser.storage.store import PseudonymiserStore

    cfg = PseudonymiserConfig.load(config, share)
    store = await PseudonymiserStore.open(cfg.database)
    try:
        return await fn(store)  # type: ignore[operator]
    finally:
        await store.close()


@app.command("keygen")
def keygen(
    config: ConfigOpt, domain: DomainOpt = "routing", share: ShareOpt = None,
    epoch: Annotated[int, typer.Option(help="Epoch (1..255); a new epoch changes every pseudonym.")] = 1,
) -> None:
    """Generate this operator's share for a domain and epoch, here; print its public point."""
    from olievlek.pseudonymiser.service import keygen as gen

    d = _domain(domain)
    try:
        s = asyncio.run(_with_store(config, share, lambda store: gen(store, d, epoch)))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    out.print(f"domain {domain} epoch {epoch}: public point {s.public.hex()}")  # type: ignore[attr-defined]


@app.command("refresh")
def refresh(
    config: ConfigOpt,
    domain: DomainOpt = "routing",
    share: ShareOpt = None,
    delta_out: Annotated[Path | None, typer.Option(help="Operator 1: write the new random delta here (0600).")] = None,
    delta_in: Annotated[Path | None, typer.Option(help="Operator 2: subtract the delta read from here.")] = None,
) -> None:
    """Move a random delta between the shares: every pseudonym stays the same."""
    from olievlek.pseudonymiser.service import refresh as move

    d = _domain(domain)
    if (delta_out is None) == (delta_in is None):
        raise ConfigError("give exactly one of --delta-out (first operator) or --delta-in (second operator)")
    if delta_out is not None:
        delta = voprf.random_scalar()
        fd = os.open(delta_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(delta)
        sign = 1
    else:
        assert delta_in is not None
        delta = delta_in.read_bytes()
        if len(delta) != voprf.SCALAR_LEN:
            raise ConfigError(f"{delta_in} does not hold a 32-byte delta")
        sign = -1
    try:
        s = asyncio.run(_with_store(config, share, lambda store: move(store, d, delta, sign)))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if delta_in is not None:
        delta_in.unlink()  # the delta is as secret as a share
    out.print(f"domain {domain}: share refreshed, new public point {s.public.hex()}")  # type: ignore[attr-defined]


@app.command("bundle-entry")
def bundle_entry(
    domain: DomainOpt,
    epoch: Annotated[int, typer.Option(help="The epoch both operators generated (1..255).")],
    share1: Annotated[str, typer.Option(help="Identity holding share 1, e.g. pseudonymiser/smals.")],
    point1: Annotated[str, typer.Option(help="Share 1's public point (hex), as its keygen printed it.")],
    share2: Annotated[str, typer.Option(help="Identity holding share 2.")],
    point2: Annotated[str, typer.Option(help="Share 2's public point (hex).")],
) -> None:
    """Print the bundle's ``pseudonymisation.keys`` entry for a new epoch: K1 + K2 and who holds which share."""
    from .federation import operator_key_entry

    _domain(domain)
    try:
        points = [bytes.fromhex(point1), bytes.fromhex(point2)]
        if not all(voprf.is_element(p) for p in points):
            raise ValueError("not a group element")
        entry = operator_key_entry(domain, epoch, points, [share1, share2])
    except ValueError as exc:
        raise ConfigError(f"a public point is not valid: {exc}") from None
    out.print(yaml.safe_dump([entry], sort_keys=False).rstrip(), markup=False)
