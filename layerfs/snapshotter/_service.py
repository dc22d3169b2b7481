"""The snapshots service: each RPC is one ``Store`` call, translated.

No storage rule lives here: keys, parents, kinds and labels are checked by
the store, and its errors become gRPC status codes through ``_errors``.
The store is used by one request at a time (a lock), as containerd itself
does with its snapshotters' metadata; the work that takes time (layer
unpacking) happens in containerd, on the mounts this service returns.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2

from layerfs import errors
from layerfs._store import Store

from ._convert import info_from_message, info_message, mount_messages, parent_or_none
from ._errors import status_of
from ._mounts import Premounts

__all__ = ["SnapshotsService", "LIST_BATCH"]

log = logging.getLogger("layerfs.serve")

#: Infos per ``ListSnapshotsResponse`` message of the List stream.
LIST_BATCH = 100

F = TypeVar("F", bound=Callable[..., Any])


class _Stopping(Exception):
    """A request reached the service after ``close``."""


def _rpc(method: F) -> F:
    """Run ``method`` under the store lock; turn layerfs errors into gRPC status codes."""

    @functools.wraps(method)
    def wrapper(self: SnapshotsService, request: Any, context: grpc.ServicerContext) -> Any:
        started = waited = time.perf_counter()
        try:
            with self._lock:
                waited = time.perf_counter()
                if self._closed:
                    raise _Stopping
                return method(self, request, context)
        except _Stopping:
            context.abort(grpc.StatusCode.UNAVAILABLE, "layerfs serve is stopping; retry")
        except errors.LayerfsError as exc:
            code = status_of(exc)
            log.debug("%s: %s: %s", method.__name__, code.name, exc)
            context.abort(code, str(exc))
        except Exception as exc:
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        finally:
            log.debug(
                "%s %s: %.1f ms (%.1f ms of it waiting for the store)",
                method.__name__,
                getattr(request, "key", ""),
                (time.perf_counter() - started) * 1000,
                (waited - started) * 1000,
            )

    return wrapper  # type: ignore[return-value]


class SnapshotsService:
    """The servicer of ``containerd.services.snapshots.v1.Snapshots`` over one store.

    Args:
        store: an open store; the service does not close it.
        pb: the messages module (``_proto.load()[0]``).
    """

    def __init__(self, store: Store, pb: Any) -> None:
        self._store = store
        self._pb = pb
        self._lock = threading.Lock()
        self._closed = False
        self._premounts = Premounts(store)

    def close(self) -> None:
        """Wait for the request running now, then answer UNAVAILABLE to any later one.

        gRPC's stop gives running requests a grace period and then returns
        without them; one still running would otherwise meet a closed store.
        """
        with self._lock:
            self._closed = True

    def _mounts(self, key: str, mounts: list[Any]) -> list[dict[str, Any]]:
        return mount_messages(self._premounts.for_containerd(key, mounts))

    @_rpc
    def Prepare(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Create an active snapshot and return its mounts."""
        mounts = self._store.prepare(
            request.key, parent_or_none(request.parent), labels=dict(request.labels)
        )
        return self._pb.PrepareSnapshotResponse(mounts=self._mounts(request.key, mounts))

    @_rpc
    def View(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Create a read-only view and return its mounts."""
        mounts = self._store.view(
            request.key, parent_or_none(request.parent), labels=dict(request.labels)
        )
        return self._pb.ViewSnapshotResponse(mounts=self._mounts(request.key, mounts))

    @_rpc
    def Mounts(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The mounts of an active snapshot or view."""
        mounts = self._store.mounts(request.key)
        return self._pb.MountsResponse(mounts=self._mounts(request.key, mounts))

    @_rpc
    def Commit(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Commit an active snapshot under a name; labels replace the active's when given."""
        self._premounts.release(request.key)
        labels = dict(request.labels) or None
        self._store.commit(request.name, request.key, labels=labels)
        return empty_pb2.Empty()

    @_rpc
    def Remove(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Remove a snapshot (refused while it has children)."""
        self._premounts.release(request.key)
        self._store.remove(request.key)
        return empty_pb2.Empty()

    @_rpc
    def Stat(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The info of one snapshot."""
        info = self._store.stat(request.key)
        return self._pb.StatSnapshotResponse(info=info_message(self._pb, info))

    @_rpc
    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Change labels: ``labels`` replaces them all, ``labels.<key>`` sets or deletes one."""
        info = info_from_message(request.info)
        paths = list(request.update_mask.paths)
        bad = [p for p in paths if p != "labels" and not p.startswith("labels.")]
        if bad:
            raise errors.InvalidArgument(
                f"update of {info.name!r}: cannot change {', '.join(bad)}; only labels can change"
            )
        updated = self._store.update(info, *paths)
        return self._pb.UpdateSnapshotResponse(info=info_message(self._pb, updated))

    def List(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """Stream the infos matching any of the filters, in batches of ``LIST_BATCH``."""
        infos = self._walk(request, context)
        for start in range(0, len(infos), LIST_BATCH):
            batch = [info_message(self._pb, i) for i in infos[start : start + LIST_BATCH]]
            yield self._pb.ListSnapshotsResponse(info=batch)

    @_rpc
    def _walk(self, request: Any, context: grpc.ServicerContext) -> list[Any]:
        return list(self._store.walk(*request.filters))

    @_rpc
    def Usage(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Disk used by the snapshot itself."""
        usage = self._store.usage(request.key)
        return self._pb.UsageResponse(size=usage.size, inodes=usage.inodes)

    @_rpc
    def Cleanup(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Repair what interrupted operations left (``Store.check(repair=True)``).

        containerd calls this after its garbage collection removed snapshots.
        Removal here is synchronous, so what is left is only what a crash left.
        """
        for problem in self._store.check(repair=True):
            log.info("cleanup: %s", problem)
        return empty_pb2.Empty()
