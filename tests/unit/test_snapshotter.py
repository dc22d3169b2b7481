"""``layerfs serve`` without containerd: the service over a real socket, the socket rules, the mount maths."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from layerfs import Mount, errors
from layerfs.snapshotter import _proto, serve
from layerfs.snapshotter._errors import status_of
from layerfs.snapshotter._mounts import fits_containerd, kernel_data_bytes
from layerfs.snapshotter._socket import claim


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """A stub talking to ``serve()`` (copy driver) on a socket, in a thread."""
    pb, services = _proto.load()
    sock = tmp_path / "s.sock"
    ready, stop = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            serve(tmp_path / "store", "copy", None, sock, ready=ready, stop=stop)
        except BaseException as exc:  # surfaced by the test
            failed.append(exc)
            ready.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert ready.wait(30) and not failed, failed
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            yield pb, services.SnapshotsStub(channel)
    finally:
        stop.set()
        thread.join(30)
    assert not sock.exists()


def _code(call: Any, request: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    return info.value.code()


def test_snapshot_lifecycle_over_grpc(client: tuple[Any, Any]) -> None:
    pb, stub = client
    r = stub.Prepare(pb.PrepareSnapshotRequest(key="k1", labels={"a": "1"}))
    (m,) = r.mounts
    assert m.type == "bind" and list(m.options) == ["rbind", "rw"]
    Path(m.source, "file").write_text("hello")
    stub.Commit(pb.CommitSnapshotRequest(name="c1", key="k1"))
    info = stub.Stat(pb.StatSnapshotRequest(key="c1")).info
    assert (info.name, info.parent, info.kind) == ("c1", "", pb.COMMITTED)
    assert dict(info.labels) == {"a": "1"} and info.created_at.seconds > 0
    view = stub.View(pb.ViewSnapshotRequest(key="v1", parent="c1")).mounts[0]
    assert list(view.options) == ["rbind", "ro"]
    assert Path(view.source, "file").read_text() == "hello"
    stub.Prepare(pb.PrepareSnapshotRequest(key="k2", parent="c1"))
    assert stub.Mounts(pb.MountsRequest(key="k2")).mounts[0].type == "bind"
    assert stub.Stat(pb.StatSnapshotRequest(key="k2")).info.kind == pb.ACTIVE
    assert stub.Stat(pb.StatSnapshotRequest(key="v1")).info.kind == pb.VIEW

    usage = stub.Usage(pb.UsageRequest(key="c1"))
    assert usage.size >= 5 and usage.inodes >= 1

    upd = pb.UpdateSnapshotRequest(info=pb.Info(name="k2", labels={"x": "y", "z": "w"}))
    upd.update_mask.paths.append("labels.x")
    assert dict(stub.Update(upd).info.labels) == {"x": "y"}
    upd = pb.UpdateSnapshotRequest(info=pb.Info(name="k2", labels={"b": "2"}))
    assert dict(stub.Update(upd).info.labels) == {"b": "2"}  # no mask: all labels replaced

    listed = [i for batch in stub.List(pb.ListSnapshotsRequest()) for i in batch.info]
    assert sorted(i.name for i in listed) == ["c1", "k2", "v1"]
    only = stub.List(pb.ListSnapshotsRequest(filters=["kind==active"]))
    assert [i.name for batch in only for i in batch.info] == ["k2"]

    stub.Cleanup(pb.CleanupRequest())
    for key in ("k2", "v1", "c1"):
        stub.Remove(pb.RemoveSnapshotRequest(key=key))
    assert [i for b in stub.List(pb.ListSnapshotsRequest()) for i in b.info] == []


def test_errors_map_to_the_codes_containerd_checks(client: tuple[Any, Any]) -> None:
    pb, stub = client
    stub.Prepare(pb.PrepareSnapshotRequest(key="k"))
    code = grpc.StatusCode
    assert _code(stub.Prepare, pb.PrepareSnapshotRequest(key="k")) == code.ALREADY_EXISTS
    assert _code(stub.Stat, pb.StatSnapshotRequest(key="nope")) == code.NOT_FOUND
    assert _code(stub.Prepare, pb.PrepareSnapshotRequest(key="x", parent="nope")) == code.NOT_FOUND
    # only committed snapshots are parents; only active ones commit
    assert _code(stub.View, pb.ViewSnapshotRequest(key="v", parent="k")) == code.FAILED_PRECONDITION
    stub.Commit(pb.CommitSnapshotRequest(name="c", key="k"))
    stub.View(pb.ViewSnapshotRequest(key="v", parent="c"))
    assert (
        _code(stub.Commit, pb.CommitSnapshotRequest(name="c2", key="v")) == code.FAILED_PRECONDITION
    )
    assert _code(stub.Remove, pb.RemoveSnapshotRequest(key="c")) == code.FAILED_PRECONDITION
    assert _code(stub.Prepare, pb.PrepareSnapshotRequest(key="")) == code.INVALID_ARGUMENT
    bad = pb.UpdateSnapshotRequest(info=pb.Info(name="c"))
    bad.update_mask.paths.append("parent")
    assert _code(stub.Update, bad) == code.INVALID_ARGUMENT
    assert _code(stub.Usage, pb.UsageRequest(key="nope")) == code.NOT_FOUND


def test_error_table_covers_every_category() -> None:
    code = grpc.StatusCode
    expected = {
        errors.NotFound: code.NOT_FOUND,
        errors.AlreadyExists: code.ALREADY_EXISTS,
        errors.FailedPrecondition: code.FAILED_PRECONDITION,
        errors.InvalidArgument: code.INVALID_ARGUMENT,
        errors.Unsupported: code.UNIMPLEMENTED,
        errors.Busy: code.FAILED_PRECONDITION,
        errors.LayerfsError: code.UNKNOWN,
    }
    for cls, want in expected.items():
        assert status_of(cls("x")) is want, cls


# -- socket ---------------------------------------------------------------------------------


def _listen(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    return s


def test_a_held_socket_refuses_a_second_server(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    with claim(sock):
        listener = _listen(sock)
        with pytest.raises(errors.Busy, match="another layerfs serve"), claim(sock):
            pass
        listener.close()
        assert sock.exists()  # the refused server did not touch it
    assert not sock.exists()


def test_a_stale_socket_is_replaced_and_other_files_are_not(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    _listen(sock).close()  # a socket file nobody serves: a dead server's
    with claim(sock):
        assert not sock.exists()
    sock.write_text("not a socket")
    with pytest.raises(errors.FailedPrecondition, match="not a socket"), claim(sock):
        pass
    assert sock.read_text() == "not a socket"


def test_socket_is_created_0600(client: tuple[Any, Any], tmp_path: Path) -> None:
    assert stat.S_IMODE(os.stat(tmp_path / "s.sock").st_mode) == 0o600


# -- mounts containerd can take ---------------------------------------------------------------


def _overlay(n: int, home: str = "/var/lib/layerfs/overlay") -> Mount:
    lowers = ":".join(f"{home}/l/L{i:07d}" for i in range(n))
    upper = f"{home}/snapshots/9"
    opts = (f"lowerdir={lowers}", f"upperdir={upper}/fs", f"workdir={upper}/work", "index=off")
    return Mount("overlay", "overlay", (*opts, "ro"))


def test_containerd_shortens_lowerdirs_past_a_page() -> None:
    small = _overlay(10)
    # Below the threshold the data string goes as it is, flags left out.
    assert kernel_data_bytes(small) == len(",".join(small.options[:-1])) + 1
    deep = _overlay(300)
    assert sum(len(o) + 1 for o in deep.options) > 4096
    # Shortened: each lower is its 8-character link name and a colon.
    assert kernel_data_bytes(deep) < 300 * 9 + 200
    assert fits_containerd([deep])
    assert not fits_containerd([_overlay(470)])


def test_lowerdirs_without_a_common_directory_are_not_shortened() -> None:
    lowers = ":".join(f"/a{i}/l/{'X' * 30}" for i in range(150))
    m = Mount("overlay", "overlay", (f"lowerdir={lowers}",))
    assert kernel_data_bytes(m) == len(m.options[0]) + 1
    assert not fits_containerd([m])
    # fuse mounts go to the mount helper as arguments: no page limit
    assert fits_containerd([Mount("fuse.layerfs", "layerfs", m.options)])


def test_mount_fuse_calls_reach_the_mount_helper(capsys: pytest.CaptureFixture[str]) -> None:
    # mount.fuse runs `layerfs layerfs TARGET -o OPTIONS` for type fuse.layerfs.
    from layerfs.cli import main

    assert main(["layerfs", "/nonexistent-target", "-o", "upperdir=/u"]) == 2
    assert "mount.fuse.layerfs:" in capsys.readouterr().err


def test_commands_run_from_request_threads(tmp_path: Path) -> None:
    # Drivers shell out (dmsetup, mount) from the server's request threads: with gRPC's
    # fork handlers on, some of those children abort before exec.
    import subprocess
    import sys

    script = f"""
import layerfs.snapshotter
from layerfs.snapshotter import _proto
from concurrent import futures
import grpc
from layerfs._run import run
pb, services = _proto.load()
class S(services.SnapshotsServicer):
    def Stat(self, request, context):
        for _ in range(40):
            run(["true"], timeout=10)
        return pb.StatSnapshotResponse()
server = grpc.server(futures.ThreadPoolExecutor(4))
services.add_SnapshotsServicer_to_server(S(), server)
server.add_insecure_port("unix://{tmp_path}/s.sock")
server.start()
with grpc.insecure_channel("unix://{tmp_path}/s.sock") as ch:
    services.SnapshotsStub(ch).Stat(pb.StatSnapshotRequest(key="x"))
server.stop(0)
"""
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]


def test_a_request_after_close_is_told_to_retry(tmp_path: Path) -> None:
    from layerfs import Store
    from layerfs.snapshotter._service import SnapshotsService

    class Aborted(Exception):
        pass

    class Context:
        code: grpc.StatusCode | None = None

        def abort(self, code: grpc.StatusCode, details: str) -> None:
            self.code = code
            raise Aborted(details)

    pb, _ = _proto.load()
    with Store(tmp_path / "store", driver="copy") as store:
        service = SnapshotsService(store, pb)
        service.close()
        context = Context()
        with pytest.raises(Aborted, match="stopping"):
            service.Prepare(pb.PrepareSnapshotRequest(key="k"), context)
        assert context.code == grpc.StatusCode.UNAVAILABLE
        assert list(store.walk()) == []
