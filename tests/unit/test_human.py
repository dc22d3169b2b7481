"""What the layerfs command prints for people: sizes, columns and the status summary."""

from __future__ import annotations

import pytest

from layerfs._human import human_size, status_lines, table_lines

OVERLAY = {
    "driver": "overlay",
    "root": "/var/lib/layerfs",
    "mounts": 1,
    "snapshots": {"active": 1, "committed": 2, "view": 0},
    "driver_status": {
        "driver": "overlay",
        "home": "/var/lib/layerfs/overlay",
        "max_layers": 500,
        "mount_api": "fsopen+lowerdir+",
        "probes": {
            "backing_fs": "xfs",
            "d_type": True,
            "explicit_off": True,
            "kernel": "6.18.44",
            "lowerdir_plus": True,
            "metacopy_default": "N",
            "native_diff": True,
            "new_mount_api": True,
            "page_size": 4096,
            "privileged": True,
            "redirect_dir_default": "N",
            "userxattr": False,
        },
        "volatile": False,
        "xattr_prefix": "trusted.",
    },
}

DEVMAPPER = {
    "driver": "devmapper",
    "root": "/var/lib/layerfs",
    "mounts": 0,
    "snapshots": {"active": 0, "committed": 3, "view": 1},
    "driver_status": {
        "driver": "devmapper",
        "pool": "layerfs-pool",
        "pool_owned": True,
        "loopback": True,
        "fs": "xfs",
        "udev": False,
        "device_prefix": "layerfs-1a2b",
        "thin_id_range": [1000, 1999],
        "devices": 5,
        "pool_status": {
            "transaction_id": 12,
            "meta_used": 300,
            "meta_total": 4096,
            "data_used": 1000,
            "data_total": 65536,
            "mode": "rw",
            "needs_check": False,
            "error_if_no_space": True,
            "held_root": None,
        },
        "data_used_bytes": 1000 * 65536,
        "data_total_bytes": 65536 * 65536,
        "metadata_used_bytes": 300 * 4096,
        "metadata_total_bytes": 4096 * 4096,
    },
}


def facts(lines: list[str]) -> dict[str, str]:
    """Label -> value, continuation lines joined to their label's value."""
    out: dict[str, str] = {}
    last = ""
    for line in lines:
        if line.startswith("     "):  # labels are indented by one space a level
            out[last] += " " + line.strip()
            continue
        label, _, value = line.partition(":")
        last = label.strip()
        out[last] = value.strip()
    return out


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (10 * 1024, "10 KiB"),
        (1024 * 1024 - 1, "1.0 MiB"),
        (5 << 30, "5.0 GiB"),
        (300 << 40, "300 TiB"),
    ],
)
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text


def test_table_lines_align_and_never_cut() -> None:
    lines = table_lines(["KEY", "SIZE"], [["sha256:" + "a" * 64, "1.0 KiB"], ["b", "12 MiB"]])
    assert lines[0].startswith("KEY") and lines[1].startswith("sha256:" + "a" * 64)
    assert lines[0].index("SIZE") == lines[1].index("1.0 KiB") == lines[2].index("12 MiB")


def test_overlay_status_names_the_backing_filesystem_and_probes() -> None:
    lines = status_lines(OVERLAY, width=80)
    got = facts(lines)
    assert lines[:3] == [
        "Root:                                     /var/lib/layerfs",
        "Driver:                                   overlay",
        " Backing filesystem:                      xfs",
    ]
    assert got["Supports d_type"] == "yes"
    assert got["Mount API"] == "fsopen+lowerdir+ (up to 500 layers)"
    assert got["Native diff"] == "yes"
    assert got["mount(2) options limit"] == "4.0 KiB"
    assert got["Snapshots"] == "3"
    assert (got["Committed"], got["Active"], got["Views"]) == ("2", "1", "0")
    assert got["Mounted"] == "1"
    assert all(len(line) <= 80 for line in lines)


def test_devmapper_status_shows_pool_usage() -> None:
    got = facts(status_lines(DEVMAPPER, width=100))
    assert got["Pool"] == "layerfs-pool (made by layerfs, on loop files)"
    assert got["Data space"] == "62 MiB used of 4.0 GiB (2%), 3.9 GiB free"
    assert got["Metadata space"] == "1.2 MiB used of 16 MiB (7%), 15 MiB free"
    assert got["Pool mode"] == "rw"
    assert got["Thin ids"] == "1000-1999"
    assert got["Thin devices"] == "5"
    assert got["Transaction id"] == "12"
    assert got["Held metadata root"] == "none"
    assert "Data used" not in got  # raw block counts are folded into the sizes


def test_facts_no_summary_knows_are_still_printed_and_wrapped_whole() -> None:
    status = {
        "driver": "zfs",
        "root": "/r",
        "snapshots": {},
        "mounts": 0,
        "driver_status": {
            "driver": "zfs",
            "dataset": "tank/layerfs",
            "features": [f"feature_{i}" for i in range(30)],
            "quota_bytes": 3 << 30,
        },
    }
    lines = status_lines(status, width=60)
    got = facts(lines)
    assert got["Dataset"] == "tank/layerfs"
    assert got["Quota"] == "3.0 GiB"
    assert got["Features"].split(", ") == [f"feature_{i}" for i in range(30)]
    assert all(len(line) <= 60 for line in lines)
