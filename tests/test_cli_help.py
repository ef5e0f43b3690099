"""`olievlek --help` and every subcommand's --help work through the real entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = [
    [], ["pki"], ["pki", "init"], ["pki", "issue"], ["pki", "revoke"], ["pki", "sign"],
    ["broker"], ["broker", "serve"], ["broker", "migrate"], ["node"], ["node", "serve"],
    ["case"], ["case", "open"], ["alert"], ["alert", "move"],
    ["inbox"], ["inbox", "identify"], ["up"],
    ["policy"], ["policy", "check"], ["policy", "test"], ["policy", "explain"], ["policy", "flows"],
    ["policy", "diff"], ["policy", "record"], ["policy", "keygen"], ["policy", "sign"], ["policy", "verify"],
    ["policy", "root"], ["policy", "root", "init"], ["policy", "root", "rotate"],
    ["pseudonymiser"], ["pseudonymiser", "serve"], ["pseudonymiser", "keygen"], ["pseudonymiser", "refresh"],
    ["pseudonymiser", "bundle-entry"],
    ["witness"], ["witness", "run"],
    ["audit"], ["audit", "verify"], ["audit", "query"], ["audit", "report"], ["audit", "proof"], ["audit", "replay"],
    ["case", "show"], ["case", "list"], ["case", "update"], ["case", "phase"], ["case", "note"], ["case", "close"],
    ["case", "assign"], ["case", "access-log"], ["case", "retention", "extend"], ["node", "keygen"],
    ["user", "add"], ["user", "remove"], ["user", "list"], ["user", "confirm"], ["user", "pending"],
    ["user", "grants"], ["retention", "due"], ["retention", "run"],
    ["subject", "export"], ["subject", "erase"], ["agreement", "record"], ["agreement", "withdraw"],
    ["agreement", "list"], ["handover", "send"], ["inbox", "accept"], ["inbox", "return"], ["outbox"],
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "olievlek")
def test_help(args: list[str]) -> None:
    r = subprocess.run([sys.executable, "-m", "olievlek", *args, "--help"], capture_output=True, text=True,
                       timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    assert "Usage" in r.stdout


@pytest.mark.timeout(60)
def test_console_script_is_installed() -> None:
    import shutil

    exe = shutil.which("olievlek") or str(__import__("pathlib").Path(sys.executable).parent / "olievlek")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0 and "pki" in r.stdout and "up" in r.stdout


def test_no_command_takes_an_identifier_argument() -> None:
    """Identifiers come from a prompt, stdin or a file: no option may be named for one."""
    import typer.main
    from olievlek.cli.app import app

    group = typer.main.get_command(app)
    forbidden = ("national", "nrn", "rijksregister", "name", "birth", "address", "identity", "note", "text")

    def walk(cmd: object, path: str) -> None:
        for p in getattr(cmd, "params", []):
            for opt in getattr(p, "opts", []):
                assert not any(f in opt.lower() for f in forbidden), f"{path} {opt}"
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(group, "olievlek")
