"""layerfs as a containerd snapshotter: the ``layerfs serve`` daemon.

containerd loads out-of-process snapshotters as *proxy plugins*: it calls
the gRPC service ``containerd.services.snapshots.v1.Snapshots`` on a unix
socket, and mounts what the service returns with its own mount code. This
package answers those calls from one layerfs ``Store``.

Layering, bottom up (a module imports only from below):

- ``proto/``: the ``.proto`` files, containerd's wire format;
- ``_proto``: builds message classes and stubs from them at import;
- ``_errors``: layerfs error categories -> gRPC status codes, one table;
- ``_convert``: Info, kinds, labels, mounts <-> messages;
- ``_mounts``: mounts containerd's own mount code can take (page-size facts);
- ``_service``: the servicer, one ``Store`` call per RPC;
- ``_socket``: one live server per socket path, mode 0600;
- ``_daemon``: ``serve()``, wiring store, server, socket and signals.

It needs the ``serve`` extra (grpcio, grpcio-tools).
"""

import os as _os

# gRPC's fork handlers break commands forked from its request threads: the
# child of a fork taken while gRPC's poller runs may abort in gRPC's
# at-fork code ("epoll_wait error: Bad file descriptor"), and drivers run
# dmsetup, mount and mkfs from there. The server never forks to serve, so
# it switches them off; this must happen before grpc is first imported.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from ._daemon import DEFAULT_SOCKET as DEFAULT_SOCKET
from ._daemon import serve as serve

__all__ = ["serve", "DEFAULT_SOCKET"]
