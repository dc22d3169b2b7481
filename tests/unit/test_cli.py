"""The ``layerfs`` command: subcommands, JSON output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from layerfs._human import human_size
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


def test_status_prints_a_summary_and_json_on_request(tmp_path: Path) -> None:
    root = tmp_path / "s"
    cli(root, "prepare", "a")
    cli(root, "commit", "base", "a")
    cli(root, "prepare", "b", "base")
    text = cli(root, "status").stdout.decode()
    facts = {}
    for line in text.splitlines():
        label, _, value = line.partition(":")
        facts[label] = value.strip()
    assert facts["Root"] == str(root)
    assert facts["Driver"] == "copy"
    assert facts["Snapshots"] == "2"
    assert (facts[" Committed"], facts[" Active"], facts[" Views"]) == ("1", "1", "0")
    status = json.loads(cli(root, "--json", "status").stdout)
    assert status["snapshots"] == {"active": 1, "committed": 1, "view": 0}


def test_ls_prints_a_header_and_aligned_columns(tmp_path: Path) -> None:
    root = tmp_path / "s"
    assert cli(root, "ls").stdout.decode().split() == ["KEY", "PARENT", "KIND"]
    cli(root, "prepare", "a")
    cli(root, "commit", "base-layer", "a")
    cli(root, "prepare", "web-1", "base-layer")
    lines = cli(root, "ls").stdout.decode().splitlines()
    assert lines[0].split() == ["KEY", "PARENT", "KIND"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["base-layer"].split() == ["base-layer", "committed"]
    assert rows["web-1"].split() == ["web-1", "base-layer", "active"]
    # Columns line up under their headers.
    assert lines[0].index("KIND") == rows["web-1"].index("active")
    assert lines[0].index("PARENT") == rows["web-1"].index("base-layer")
    assert cli(root, "ls", "-q").stdout.decode().split() == ["base-layer", "web-1"]
    listed = json.loads(cli(root, "--json", "ls").stdout)
    assert {i["name"] for i in listed} == {"base-layer", "web-1"}


def test_usage_prints_a_header_and_a_human_size(tmp_path: Path) -> None:
    root = tmp_path / "s"
    cli(root, "prepare", "a")
    tree = next((root / "copy" / "snapshots").iterdir())  # the copy driver's tree of "a"
    (tree / "blob").write_bytes(b"x" * 300_000)
    lines = cli(root, "usage", "a").stdout.decode().splitlines()
    assert lines[0].split() == ["KEY", "SIZE", "INODES"]
    exact = json.loads(cli(root, "--json", "usage", "a").stdout)
    assert exact["size"] >= 300_000
    assert lines[1].split() == ["a", *human_size(exact["size"]).split(), str(exact["inodes"])]
    assert lines[1].split()[2] == "KiB"


def test_json_goes_before_or_after_the_command(tmp_path: Path) -> None:
    root = tmp_path / "s"
    cli(root, "prepare", "a")
    before = json.loads(cli(root, "--json", "status").stdout)
    after = json.loads(cli(root, "status", "--json").stdout)
    assert before == after and after["snapshots"]["active"] == 1
    assert json.loads(cli(root, "ls", "--json").stdout)[0]["name"] == "a"
    assert not cli(root, "ls").stdout.startswith(b"[")


def test_import_refuses_a_tar_over_max_size_and_stores_nothing(tmp_path: Path) -> None:
    root = tmp_path / "s"
    tar = tmp_path / "l.tar"
    tar.write_bytes(build_tar([("big", b"x" * 100_000)]))
    refused = cli(root, "import", "--max-size", "64K", str(tar))
    assert refused.returncode == 2, refused.stderr
    assert b"max_size" in refused.stderr or b"bigger" in refused.stderr, refused.stderr
    assert json.loads(cli(root, "--json", "ls").stdout) == []
    bad = cli(root, "import", "--max-size", "lots", str(tar))
    assert bad.returncode == 2 and b"--max-size" in bad.stderr
    assert cli(root, "import", "--max-size", "1M", str(tar)).returncode == 0
    assert cli(root, "check").returncode == 0
