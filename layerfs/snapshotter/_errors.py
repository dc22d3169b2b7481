"""One table from layerfs errors to the gRPC status codes containerd checks.

containerd's proxy snapshotter turns the status code of each reply back
into its own error categories (errdefs): NotFound, AlreadyExists,
FailedPrecondition, InvalidArgument and NotImplemented drive its logic
(an unpack that meets AlreadyExists reuses the layer; garbage collection
skips a snapshot that answers FailedPrecondition). Everything else is
reported to the user as it comes.
"""

from __future__ import annotations

import grpc

from layerfs import errors

__all__ = ["CODES", "status_of"]

#: layerfs error category -> gRPC status code. Most specific first.
CODES: dict[type[errors.LayerfsError], grpc.StatusCode] = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unsupported: grpc.StatusCode.UNIMPLEMENTED,
    # A mounted snapshot cannot be committed or removed yet: containerd
    # treats it as a precondition (retry after unmount), as its own
    # snapshotters do.
    errors.Busy: grpc.StatusCode.FAILED_PRECONDITION,
    errors.NoSpace: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Corrupt: grpc.StatusCode.DATA_LOSS,
}


def status_of(exc: errors.LayerfsError) -> grpc.StatusCode:
    """The gRPC code for ``exc``: its category's, else ``UNKNOWN``."""
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls]
    return grpc.StatusCode.UNKNOWN
