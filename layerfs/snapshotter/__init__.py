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

from ._daemon import DEFAULT_SOCKET as DEFAULT_SOCKET
from ._daemon import serve as serve

__all__ = ["serve", "DEFAULT_SOCKET"]
