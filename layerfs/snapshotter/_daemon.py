"""``layerfs serve``: wire a store, the snapshots service, the socket and signals.

The process serves until SIGTERM or SIGINT, then stops taking requests,
lets those in flight finish (a few seconds at most), closes the store and
removes its socket. Mounts stay: containers running on snapshots keep
running, and a restarted server finds the store as it was.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping
from concurrent import futures
from pathlib import Path

from layerfs._store import Store

from . import _proto
from ._socket import claim

__all__ = ["DEFAULT_SOCKET", "serve"]

log = logging.getLogger("layerfs.serve")

#: Where ``layerfs serve`` listens unless told otherwise.
DEFAULT_SOCKET = "/run/layerfs/snapshotter.sock"
_GRACE_SECONDS = 5.0


def serve(
    root: str | os.PathLike[str],
    driver: str | None,
    options: Mapping[str, str] | None,
    socket_path: str | os.PathLike[str] = DEFAULT_SOCKET,
    threads: int = 8,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve ``containerd.services.snapshots.v1`` for one store until SIGTERM/SIGINT.

    Args:
        root, driver, options: the store, as ``Store(root, driver, options)``.
        socket_path: the unix socket to listen on (created 0600).
        threads: request threads.
        ready: set once the socket accepts connections.
        stop: serve until it is set (for callers in other threads); None
            installs SIGTERM and SIGINT handlers (main thread only).

    Raises:
        errors.Busy: another live server holds ``socket_path``.
        errors.Unsupported: grpcio is missing, or the driver cannot run here.
    """
    import grpc

    pb, services = _proto.load()
    from ._service import SnapshotsService  # needs grpc, which load() checked

    stop = stop if stop is not None else _signal_event()
    with Store(root, driver=driver, options=options) as store, claim(socket_path) as sock:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
        service = SnapshotsService(store, pb)
        services.add_SnapshotsServicer_to_server(service, server)
        old = os.umask(0o177)  # the socket is born 0600: no window where others can connect
        try:
            server.add_insecure_port(f"unix://{sock}")
            server.start()
        finally:
            os.umask(old)
        _check_mode(sock)
        log.info("serving %s (driver %s) on %s", store.root, store.driver_name, sock)
        if ready is not None:
            ready.set()
        try:
            stop.wait()
        finally:
            log.info("stopping")
            server.stop(_GRACE_SECONDS).wait()
            service.close()


def _check_mode(sock: Path) -> None:
    mode = os.stat(sock).st_mode & 0o777
    if mode != 0o600:
        os.chmod(sock, 0o600)


def _signal_event() -> threading.Event:
    event = threading.Event()

    def handler(signum: int, frame: object) -> None:
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return event
