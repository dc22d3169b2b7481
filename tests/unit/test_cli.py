"""The ``layerfs`` command: subcommands, JSON output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from layerfs.testing.suite import build_tar


def cli(root: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "layerfs.cli", "--root", str(root), "--driver", "copy", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def test_lifecycle_and_json(tmp_path: Path) -> None:
    root = tmp_path / "s"
    assert cli(root, "prepare", "a", "--label", "x=1").returncode == 0
    out = cli(root, "--json", "ls", "kind==active")
    assert json.loads(out.stdout)[0]["labels"] == {"x": "1"}
    assert cli(root, "commit", "base", "a").stdout.strip() == b"base"
    assert cli(root, "--json", "usage", "base").returncode == 0
    status = json.loads(cli(root, "--json", "status").stdout)
    assert status["snapshots"]["committed"] == 1
    assert cli(root, "rm", "base").returncode == 0
    assert cli(root, "check").returncode == 0


def test_exit_codes(tmp_path: Path) -> None:
    root = tmp_path / "s"
    assert cli(root, "rm", "missing").returncode == 3
    cli(root, "prepare", "a")
    assert cli(root, "prepare", "a").returncode == 4
    assert cli(root, "prepare", "b", "a").returncode == 5
    bad = cli(root, "prepare", "")
    assert bad.returncode == 2 and b"empty" in bad.stderr
    assert cli(root, "ls", "nofield==1").returncode == 2


def test_import_export_diff(tmp_path: Path) -> None:
    root = tmp_path / "s"
    tar = tmp_path / "l.tar"
    tar.write_bytes(build_tar([("hello", b"world")]))
    name = cli(root, "import", str(tar)).stdout.strip().decode()
    assert name.startswith("sha256:")
    again = cli(root, "import", "-", stdin=tar.read_bytes()).stdout.strip().decode()
    assert again == name
    assert cli(root, "diff", name).stdout.strip() == b"A /hello"
    exported = cli(root, "export", name).stdout
    assert b"world" in exported
    out = tmp_path / "out.tar"
    assert cli(root, "export", name, "-O", str(out)).returncode == 0
    assert out.read_bytes() == exported
    garbage = tmp_path / "bad.tar"
    garbage.write_bytes(b"garbage" * 100)
    assert cli(root, "import", str(garbage)).returncode == 2
