"""CI cannot pass by skipping: a missing tool fails, naming its Debian package, and any skip fails the run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .tools import REPO, packages, require

pytestmark = pytest.mark.timeout(120)


def _path_without(tmp_path: Path, command: str) -> str:
    """A PATH holding every command of this machine's /usr/bin and /bin except ``command``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in (Path("/usr/bin"), Path("/bin")):
        for tool in folder.iterdir():
            if tool.name != command and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    return str(bin_dir)


def test_the_install_script_fails_naming_the_package_of_a_missing_tool(tmp_path: Path) -> None:
    script = REPO / "scripts" / "ensure_debian_tools.sh"
    present = subprocess.run(["bash", str(script), "--check"], capture_output=True, text=True, timeout=60,
                             check=False)
    assert present.returncode == 0, present.stderr  # the positive control: make test installed them all
    env = {**os.environ, "PATH": _path_without(tmp_path, "chromedriver")}
    r = subprocess.run(["bash", str(script), "--check"], capture_output=True, text=True, timeout=60, check=False,
                       env=env)
    assert r.returncode == 1
    assert "chromium-driver" in r.stderr and "apt-get install --no-install-recommends chromium-driver" in r.stderr


def test_a_test_whose_tool_is_missing_fails_under_ci_naming_the_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert require("chromedriver")["chromedriver"].endswith("chromedriver")  # present: the path
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium-driver"):
        require("chromedriver")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="chromium-driver"):
        require("chromedriver")


def test_every_tool_a_test_requires_is_in_the_package_list() -> None:
    listed = packages()
    used = {name for test in (REPO / "tests").glob("test_*.py")
            for call in re.findall(r'\brequire\(((?:"[^"]+"(?:, )?)+)\)', test.read_text())
            for name in re.findall(r'"([^"]+)"', call)}
    assert {"chromium", "chromedriver", "dot", "ip", "useradd"} <= used  # the scan finds the known ones
    assert used <= set(listed), used - set(listed)


@pytest.mark.parametrize(("ci", "returncode"), [("true", 1), ("", 0)], ids=["ci-fails", "by-hand-passes"])
def test_any_skip_fails_the_run_under_ci(tmp_path: Path, ci: str, returncode: int) -> None:
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\ndef test_runs():\n    pass\n\ndef test_skips():\n    pytest.skip('no tool here')\n")
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.no_skips", "-p", "no:cacheprovider",
                        "--rootdir", str(tmp_path), str(tmp_path / "test_skips.py")],
                       capture_output=True, text=True, timeout=60, check=False, env=env, cwd=REPO)
    assert r.returncode == returncode, r.stdout + r.stderr
    assert ("under CI nothing may skip" in r.stdout) == bool(ci), r.stdout
    if ci:
        assert "test_skips.py::test_skips: Skipped: no tool here" in r.stdout, r.stdout
