"""The dmsetup verbs, errno mapping and status parsing, on a real scratch pool."""

from __future__ import annotations

import pytest
from dmpool import ScratchPool
from layerfs.drivers.devmapper import dmsetup
from layerfs.drivers.devmapper.status import parse_pool, parse_thin

from layerfs import errors
from layerfs._run import CommandFailed


def test_parse_pool_full_line() -> None:
    line = "0 1048576 thin-pool 7 424/4096 783/8192 - rw discard_passdown queue_if_no_space - 1024"
    st = parse_pool(line, "p")
    assert (st.transaction_id, st.meta_used, st.meta_total, st.data_used, st.data_total) == (
        7,
        424,
        4096,
        783,
        8192,
    )
    assert (
        st.mode == "rw" and not st.needs_check and not st.error_if_no_space and st.held_root is None
    )
    assert round(st.data_free_percent(), 2) == round(100 * (8192 - 783) / 8192, 2)


def test_parse_pool_degraded_lines() -> None:
    line = "0 1048576 thin-pool 0 468/4096 8192/8192 79 out_of_data_space discard_passdown error_if_no_space needs_check 1024"
    st = parse_pool(line, "p")
    assert (
        st.mode == "out_of_data_space"
        and st.needs_check
        and st.error_if_no_space
        and st.held_root == 79
    )
    assert parse_pool("0 1048576 thin-pool Fail", "p").failed
    with pytest.raises(errors.InvalidArgument):
        parse_pool("0 100 linear 7:0 0", "p")


def test_parse_thin() -> None:
    assert parse_thin("0 2097152 thin 100224 2097151", "t").mapped_sectors == 100224
    empty = parse_thin("0 2097152 thin 0 -", "t")
    assert empty.mapped_sectors == 0 and empty.highest_sector is None
    assert parse_thin("0 2097152 thin Fail", "t").failed


@pytest.mark.parametrize(
    ("stderr", "cls"),
    [
        ("device-mapper: message ioctl on p  failed: File exists", errors.AlreadyExists),
        ("device-mapper: message ioctl on p  failed: No data available", errors.NotFound),
        ("device-mapper: remove ioctl on t  failed: No such device or address", errors.NotFound),
        ("Device does not exist.\nCommand failed.", errors.NotFound),
        ("device-mapper: remove ioctl on t  failed: Device or resource busy", errors.Busy),
        ("device-mapper: message ioctl on p  failed: No space left on device", errors.NoSpace),
        ("device-mapper: message ioctl on p  failed: Invalid argument", errors.InvalidArgument),
    ],
)
def test_error_mapping(stderr: str, cls: type[errors.LayerfsError]) -> None:
    err = dmsetup.error_from(CommandFailed(["dmsetup", "x"], 1, stderr), "doing x")
    assert type(err) is cls
    assert str(err).startswith("doing x")


def test_verbs_on_a_pool(scratch_pool: ScratchPool) -> None:
    pool = scratch_pool.name
    assert "thin-pool" in dmsetup.targets()
    assert pool in dmsetup.ls(target="thin-pool")
    assert parse_pool(dmsetup.status(pool), pool).transaction_id == 0
    dmsetup.message(pool, "create_thin 1")
    with pytest.raises(errors.AlreadyExists):
        dmsetup.message(pool, "create_thin 1")
    with pytest.raises(errors.NotFound):
        dmsetup.message(pool, "delete 99")
    dmsetup.message(pool, "set_transaction_id 0 1")
    with pytest.raises(errors.InvalidArgument):
        dmsetup.message(pool, "set_transaction_id 0 2")
    name = pool + "-t1"
    dmsetup.create(name, f"0 65536 thin /dev/mapper/{pool} 1")
    try:
        dmsetup.mknodes(name)
        info = dmsetup.info(name)
        assert info is not None and not info.suspended
        assert dmsetup.open_count(name) == 0
        assert "thin" in dmsetup.table(name)
        dmsetup.suspend(name)
        info = dmsetup.info(name)
        assert info is not None and info.suspended
        dmsetup.message(pool, "create_snap 2 1")
        dmsetup.resume(name)
        with pytest.raises(errors.AlreadyExists):
            dmsetup.create(name, f"0 65536 thin /dev/mapper/{pool} 1")
        with pytest.raises(errors.Busy):
            dmsetup.message(pool, "delete 1")  # active
        with open(f"/dev/mapper/{name}", "rb"):
            assert dmsetup.open_count(name) == 1
            with pytest.raises(errors.Busy):
                dmsetup.remove(name, retries=2, delay=0.01, deferred=False)
    finally:
        assert dmsetup.remove(name)
    assert dmsetup.info(name) is None
    assert dmsetup.remove(name)  # missing is fine
    with pytest.raises(errors.NotFound):
        dmsetup.create(name, f"0 65536 thin /dev/mapper/{pool} 77")
    dmsetup.message(pool, "delete 1")
    dmsetup.message(pool, "delete 2")
    with pytest.raises(errors.NotFound):
        dmsetup.status("no-such-device-here")


def test_deferred_removal(scratch_pool: ScratchPool) -> None:
    pool = scratch_pool.name
    dmsetup.message(pool, "create_thin 3")
    name = pool + "-t3"
    dmsetup.create(name, f"0 65536 thin /dev/mapper/{pool} 3")
    dmsetup.mknodes(name)
    with open(f"/dev/mapper/{name}", "rb"):
        assert dmsetup.remove(name, retries=2, delay=0.01) is False
        assert dmsetup.info(name) is not None
    assert dmsetup.info(name) is None
    dmsetup.mknodes()
    dmsetup.message(pool, "delete 3")
