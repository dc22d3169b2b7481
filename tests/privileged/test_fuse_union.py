"""The fuse union filesystem itself: lookup, readdir, copy-up, whiteouts, faults."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest
from layerfs.drivers.fuse.testing import build_sample_layers, fuse_mounted

from layerfs._sys import mount as sysmount

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")


@pytest.fixture
def layers(tmp_path: Path) -> dict[str, Path]:
    return build_sample_layers(tmp_path / "layers")


@pytest.fixture
def mnt(layers: dict[str, Path], tmp_path: Path):  # type: ignore[no-untyped-def]
    with fuse_mounted(layers, tmp_path / "mnt"):
        yield tmp_path / "mnt"


def _err(fn, *args) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as info:
        fn(*args)
    return info.value.errno


def test_read_only_union_lookup_and_read(layers: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "ro"
    with fuse_mounted(layers, target, readonly=True):
        assert sorted(os.listdir(target)) == [
            "a", "b", "fifo", "h1", "h2", "keep", "ln", "mode640", "opq", "top", "xa",
        ]  # fmt: skip
        assert sorted(os.listdir(target / "a")) == ["f1", "f3", "sub"]
        assert (target / "top").read_text() == "top-l1\n"
        assert (target / "a" / "sub" / "deep").read_text() == "deep\n"
        assert os.listdir(target / "opq") == ["new"]
        assert os.readlink(target / "ln") == "top"
        assert stat.S_ISFIFO(os.lstat(target / "fifo").st_mode)
        assert _err(os.stat, target / "a" / "f2") == errno.ENOENT
        assert _err(os.stat, target / "keep2") == errno.ENOENT
        assert os.getxattr(target / "xa", "user.color") == b"blue"
        assert _err(os.open, target / "top", os.O_WRONLY) == errno.EROFS
        assert _err(os.mkdir, target / "new") == errno.EROFS
        assert os.stat(target / "b" / "x").st_uid == 1000


def test_copy_up_on_write_keeps_lower_intact(mnt: Path, layers: dict[str, Path]) -> None:
    with open(mnt / "a" / "f1", "a") as f:
        f.write("more\n")
    assert (mnt / "a" / "f1").read_text() == "one\nmore\n"
    assert (layers["l2"] / "a" / "f1").read_text() == "one\n"
    assert (layers["upper"] / "a" / "f1").read_text() == "one\nmore\n"
    # the parent was copied up with its metadata, and is not opaque
    assert stat.S_IMODE(os.stat(layers["upper"] / "a").st_mode) == 0o755
    assert _err(os.getxattr, layers["upper"] / "a", "trusted.overlay.opaque") == errno.ENODATA
    assert sorted(os.listdir(mnt / "a")) == ["f1", "f3", "sub"]
    assert os.listdir(layers["work"] / "work") == []


def test_copy_up_preserves_metadata_and_ino(mnt: Path, layers: dict[str, Path]) -> None:
    before = os.stat(mnt / "b" / "x")
    os.utime(mnt / "b" / "x", (1_000_000, 2_000_000))
    after = os.stat(mnt / "b" / "x")
    assert after.st_ino == before.st_ino
    assert (after.st_uid, after.st_gid) == (1000, 1000)
    assert stat.S_IMODE(after.st_mode) == 0o600
    assert after.st_mtime == 2_000_000
    up = os.stat(layers["upper"] / "b" / "x")
    assert (up.st_uid, stat.S_IMODE(up.st_mode)) == (1000, 0o600)
    os.setxattr(mnt / "xa", "user.size", b"big")
    assert os.getxattr(layers["upper"] / "xa", "user.color") == b"blue"
    assert sorted(os.listxattr(mnt / "xa")) == ["user.color", "user.size"]


def test_truncate_and_o_trunc(mnt: Path, layers: dict[str, Path]) -> None:
    os.truncate(mnt / "top", 3)
    assert (mnt / "top").read_text() == "top"
    fd = os.open(mnt / "a" / "f3", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"new")
    os.close(fd)
    assert (mnt / "a" / "f3").read_text() == "new"
    assert (layers["l1"] / "a" / "f3").read_text() == "three\n"


def test_unlink_lower_leaves_whiteout(mnt: Path, layers: dict[str, Path]) -> None:
    os.unlink(mnt / "a" / "f1")
    wh = os.lstat(layers["upper"] / "a" / "f1")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert sorted(os.listdir(mnt / "a")) == ["f3", "sub"]
    # a file made only in the upper goes without a trace
    (mnt / "a" / "tmpfile").write_text("t")
    os.unlink(mnt / "a" / "tmpfile")
    assert not os.path.lexists(layers["upper"] / "a" / "tmpfile")
    assert not any(n.startswith(".wh.") for n in os.listdir(layers["upper"] / "a"))


def test_rmdir_and_recreate_is_opaque(mnt: Path, layers: dict[str, Path]) -> None:
    assert _err(os.rmdir, mnt / "keep") == errno.ENOTEMPTY
    os.unlink(mnt / "keep" / "k")
    os.rmdir(mnt / "keep")
    assert not os.path.exists(mnt / "keep")
    wh = os.lstat(layers["upper"] / "keep")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    os.mkdir(mnt / "keep", 0o700)
    assert os.listdir(mnt / "keep") == []
    assert os.getxattr(layers["upper"] / "keep", "trusted.overlay.opaque") == b"y"
    assert stat.S_IMODE(os.stat(mnt / "keep").st_mode) == 0o700
    # overlay's own xattrs stay hidden and untouchable through the mount
    assert "trusted.overlay.opaque" not in os.listxattr(mnt / "keep")
    assert _err(os.getxattr, mnt / "keep", "trusted.overlay.opaque") == errno.ENODATA


def test_rename_rules(mnt: Path, layers: dict[str, Path]) -> None:
    assert _err(os.rename, mnt / "a", mnt / "a2") == errno.EXDEV
    os.rename(mnt / "a" / "f1", mnt / "a" / "f1r")
    assert (mnt / "a" / "f1r").read_text() == "one\n"
    wh = os.lstat(layers["upper"] / "a" / "f1")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    os.mkdir(mnt / "nd")
    (mnt / "nd" / "f").write_text("f")
    os.rename(mnt / "nd", mnt / "nd2")
    assert (mnt / "nd2" / "f").read_text() == "f"
    os.rename(mnt / "top", mnt / "b" / "x")
    assert (mnt / "b" / "x").read_text() == "top-l1\n"
    assert not os.path.exists(mnt / "top")


def test_rename_dir_over_whiteout(mnt: Path, layers: dict[str, Path]) -> None:
    os.unlink(mnt / "keep" / "k")
    os.rmdir(mnt / "keep")
    os.mkdir(mnt / "fresh")
    (mnt / "fresh" / "z").write_text("z")
    os.rename(mnt / "fresh", mnt / "keep")
    assert os.listdir(mnt / "keep") == ["z"]
    assert os.getxattr(layers["upper"] / "keep", "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(layers["upper"] / "fresh")


def test_hard_links_and_symlinks(mnt: Path) -> None:
    (mnt / "n1").write_text("n")
    os.link(mnt / "n1", mnt / "n2")
    assert os.stat(mnt / "n1").st_nlink == 2
    assert os.stat(mnt / "n1").st_ino == os.stat(mnt / "n2").st_ino
    os.unlink(mnt / "n1")
    assert os.stat(mnt / "n2").st_nlink == 1
    assert (mnt / "n2").read_text() == "n"
    os.link(mnt / "a" / "f3", mnt / "f3link")
    assert (mnt / "f3link").read_text() == "three\n"
    os.symlink("a/f3", mnt / "sl")
    assert os.readlink(mnt / "sl") == "a/f3"
    assert (mnt / "sl").read_text() == "three\n"


def test_readdir_offsets_are_stable(mnt: Path) -> None:
    for i in range(300):
        (mnt / "a" / f"n{i:03}").write_text("")
    seen = []
    with os.scandir(mnt / "a") as it:
        for i, entry in enumerate(it):
            seen.append(entry.name)
            if i == 10:
                os.unlink(mnt / "a" / "n299")
                (mnt / "a" / "late").write_text("")
    assert len(seen) == len(set(seen)) == 303
    assert "n299" in seen and "late" not in seen


def test_ownership_and_setgid(mnt: Path, layers: dict[str, Path]) -> None:
    for parent in mnt.parents:  # let the unprivileged child reach the mount
        if parent == Path("/tmp"):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o011)
    os.mkdir(mnt / "sg")
    os.chown(mnt / "sg", 0, 1234)
    os.chmod(mnt / "sg", 0o2777)
    pid = os.fork()
    if pid == 0:  # create as an unprivileged user
        try:
            os.setgid(4321)
            os.setuid(4321)
            (mnt / "sg" / "f").write_text("u")
            os.mkdir(mnt / "sg" / "d")
            os._exit(0)
        except BaseException:
            os._exit(1)
    assert os.waitpid(pid, 0)[1] == 0
    st = os.stat(layers["upper"] / "sg" / "f")
    assert (st.st_uid, st.st_gid) == (4321, 1234)
    st = os.stat(mnt / "sg" / "d")
    assert (st.st_uid, st.st_gid) == (4321, 1234)
    assert st.st_mode & stat.S_ISGID


def test_fallocate_append_and_statfs(mnt: Path) -> None:
    fd = os.open(mnt / "fa", os.O_CREAT | os.O_RDWR, 0o644)
    os.posix_fallocate(fd, 0, 1 << 20)
    assert os.fstat(fd).st_size == 1 << 20
    os.close(fd)
    fd = os.open(mnt / "top", os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"end\n")
    os.close(fd)
    assert (mnt / "top").read_text() == "top-l1\nend\n"
    assert os.statvfs(mnt).f_blocks > 0


def test_read_only_upper_gives_erofs(layers: dict[str, Path], tmp_path: Path) -> None:
    up = layers["upper"]
    sysmount.mount(str(up), str(up), None, sysmount.MS_BIND)
    try:
        sysmount.mount(
            "none", str(up), None, sysmount.MS_BIND | sysmount.MS_REMOUNT | sysmount.MS_RDONLY
        )
        with fuse_mounted(layers, tmp_path / "m") as info:
            m = tmp_path / "m"
            assert _err(os.open, m / "top", os.O_WRONLY) == errno.EROFS
            assert _err(os.mkdir, m / "d") == errno.EROFS
            assert (m / "top").read_text() == "top-l1\n"
            assert os.path.exists(f"/proc/{info.pid}")
    finally:
        sysmount.umount(str(up), sysmount.MNT_DETACH)


def test_enospc_during_copy_up(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    sysmount.mount("tmpfs", str(small), "tmpfs", 0, "size=1m")
    try:
        layers = build_sample_layers(tmp_path / "layers")
        (layers["l2"] / "big").write_bytes(b"x" * (4 << 20))
        layers["upper"] = small / "upper"
        layers["work"] = small / "work"
        layers["upper"].mkdir()
        layers["work"].mkdir()
        with fuse_mounted(layers, tmp_path / "m", prefix="user.") as info:
            m = tmp_path / "m"
            assert _err(os.open, m / "big", os.O_WRONLY) == errno.ENOSPC
            assert not os.path.lexists(layers["upper"] / "big")
            assert os.listdir(layers["work"] / "work") == []
            assert (m / "big").stat().st_size == 4 << 20
            (m / "ok").write_text("still serving")
            assert os.path.exists(f"/proc/{info.pid}")
    finally:
        sysmount.umount(str(small), sysmount.MNT_DETACH)


def test_vanished_lower_layer_gives_errno_not_death(
    layers: dict[str, Path], tmp_path: Path
) -> None:
    with fuse_mounted(layers, tmp_path / "m") as info:
        m = tmp_path / "m"
        assert (m / "a" / "sub" / "deep").read_text() == "deep\n"
        subprocess.run(["rm", "-rf", str(layers["l2"] / "a")], check=True)
        with pytest.raises(OSError) as exc:
            (m / "a" / "sub" / "deep").read_text()
        assert exc.value.errno in (errno.EIO, errno.ENOENT)
        assert (m / "top").read_text() == "top-l1\n"
        assert os.path.exists(f"/proc/{info.pid}")


def _worker(root: str, n: int) -> int:
    """Child process body: hammer the mount, return 0 when everything checked out."""
    base = Path(root)
    mine = base / f"w{n}"
    os.mkdir(mine)
    for i in range(200):
        (mine / f"f{i}").write_bytes(b"%d-%d" % (n, i))
    for i in range(200):
        if (mine / f"f{i}").read_bytes() != b"%d-%d" % (n, i):
            return 1
    for i in range(0, 200, 2):
        os.rename(mine / f"f{i}", mine / f"r{i}")
    for i in range(1, 200, 2):
        os.unlink(mine / f"f{i}")
    if sorted(os.listdir(mine)) != sorted(f"r{i}" for i in range(0, 200, 2)):
        return 2
    with open(base / "a" / "f3", "rb") as f:
        if f.read() != b"three\n":
            return 3
    return 0


def test_concurrent_clients_on_several_threads(layers: dict[str, Path], tmp_path: Path) -> None:
    from multiprocessing import get_context

    with fuse_mounted(layers, tmp_path / "m", threads=4) as info:
        with get_context("fork").Pool(4) as pool:
            results = pool.starmap(_worker, [(str(tmp_path / "m"), n) for n in range(4)])
        assert results == [0, 0, 0, 0]
        assert len(os.listdir(tmp_path / "m")) == 11 + 4
        assert os.path.exists(f"/proc/{info.pid}")
    assert len(os.listdir(layers["upper"] / "w0")) == 100


def test_unprivileged_mount_through_fusermount3(tmp_path: Path) -> None:
    import shutil

    if shutil.which("fusermount3") is None:
        pytest.skip("fusermount3 is not installed")
    from layerfs.drivers.fuse.fs import Config
    from layerfs.drivers.fuse.server import Server

    base = tmp_path / "u"
    for parent in tmp_path.parents:
        if parent == Path("/tmp"):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o011)
    base.mkdir()
    os.chmod(base, 0o777)
    os.chmod(tmp_path, 0o755)
    r, w = os.pipe()
    server_pid = os.fork()
    if server_pid == 0:  # the server, as nobody
        code = 1
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            os.umask(0)
            for d in ("l/d", "u", "w", "m"):
                os.makedirs(base / d)
            (base / "l" / "f").write_text("hi\n")
            (base / "l" / "d" / "x").write_text("x")
            cfg = Config(
                lowers=[str(base / "l")],
                upper=str(base / "u"),
                work=str(base / "w"),
                xattr_prefix="user.",
            )
            server = Server(cfg, str(base / "m"))
            info = server.start()
            os.write(w, info.as_dict()["data_mode"].encode())  # type: ignore[union-attr]
            os.close(w)
            server.serve()
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(w)
    mode = os.read(r, 100).decode()
    os.close(r)
    client = os.fork()
    if client == 0:  # a client, as nobody (no allow_other without privileges)
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            m = base / "m"
            with open(m / "f", "a") as f:
                f.write("more\n")
            os.unlink(m / "d" / "x")
            os.rmdir(m / "d")
            os.mkdir(m / "d")
            code = 0 if (m / "f").read_text() == "hi\nmore\n" else 2
        except BaseException as exc:
            os.write(2, f"client: {exc!r}\n".encode())
        finally:
            subprocess.run(["fusermount3", "-u", "-z", str(base / "m")], check=False)
            os._exit(code)
    assert os.waitpid(client, 0)[1] == 0
    assert os.waitpid(server_pid, 0)[1] == 0
    assert mode == "writeback-cache"
    assert (base / "u" / "f").read_text() == "hi\nmore\n"
    assert os.getxattr(base / "u" / "d", "user.overlay.opaque") == b"y"
    assert os.stat(base / "u" / "f").st_uid == 65534


def test_create_in_a_pure_upper_dir_over_a_whiteout(
    layers: dict[str, Path], tmp_path: Path
) -> None:
    # An upper-only directory holding a whiteout (as a committed upper can):
    # the name is free in the union, and creating it replaces the whiteout.
    d = layers["upper"] / "only-upper"
    d.mkdir()
    for name in ("wf", "wd", "wl"):
        os.mknod(d / name, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (d / "real").write_text("r")
    with fuse_mounted(layers, tmp_path / "mnt"):
        m = tmp_path / "mnt" / "only-upper"
        assert sorted(os.listdir(m)) == ["real"]
        (m / "wf").write_text("new")
        os.mkdir(m / "wd")
        os.symlink("real", m / "wl")
        assert _err(os.mkdir, m / "real") == errno.EEXIST
        fd_err = _err(os.open, m / "real", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        assert fd_err == errno.EEXIST
        assert sorted(os.listdir(m)) == ["real", "wd", "wf", "wl"]
        assert (m / "wf").read_text() == "new"
        assert os.readlink(m / "wl") == "real"
    assert stat.S_ISREG(os.lstat(d / "wf").st_mode)
    assert stat.S_ISDIR(os.lstat(d / "wd").st_mode)
    assert stat.S_ISLNK(os.lstat(d / "wl").st_mode)
    assert (d / "real").read_text() == "r"
