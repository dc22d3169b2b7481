"""The message classes and service stubs of containerd's snapshots API.

They are built when this module is first imported, by compiling the
``.proto`` files under ``proto/`` with ``grpc_tools`` (``grpc.protos_and_services``),
so no generated code lives in the tree: the ``.proto`` files are the one
source, and what runs always matches them. Compiling takes about 60 ms.

The files keep containerd's import paths (``containerd/types/mount.proto``...);
the modules they become are named after them
(``containerd.services.snapshots.v1.snapshots_pb2``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from layerfs import errors

__all__ = ["PROTO_DIR", "SERVICE", "load"]

#: The directory holding the ``.proto`` files, the include root for imports.
PROTO_DIR = Path(__file__).with_name("proto")
#: The full gRPC service name containerd calls.
SERVICE = "containerd.services.snapshots.v1.Snapshots"

_SNAPSHOTS = "containerd/services/snapshots/v1/snapshots.proto"
_loaded: tuple[ModuleType, ModuleType] | None = None


def load() -> tuple[Any, Any]:
    """Return ``(messages, services)``: the ``_pb2`` and ``_pb2_grpc`` modules.

    Raises:
        errors.Unsupported: grpcio or grpcio-tools is not installed (the
            message says which package to install).
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    try:
        import grpc
        import grpc_tools  # noqa: F401 - protos_and_services needs it
    except ImportError as exc:
        raise errors.Unsupported(
            f"layerfs serve needs the serve extra ({exc.name} is missing): "
            "pip install 'layerfs[serve]'"
        ) from exc
    # grpc_tools resolves .proto paths and their imports against sys.path.
    include = str(PROTO_DIR)
    sys.path.insert(0, include)
    try:
        _loaded = grpc.protos_and_services(_SNAPSHOTS)
    finally:
        sys.path.remove(include)
    return _loaded
