"""Read and copy extended attributes without following symlinks.

The one xattr copy of the project. Callers say which names to keep and
which errnos mean "skip this one" (an unprivileged copy cannot set
``trusted.*``; a filesystem may not support xattrs at all); every other
error is raised.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Collection

#: The attribute vanished between listing and reading it.
ABSENT = frozenset({errno.ENODATA})
#: ...or this filesystem or process may not have it: skip rather than fail.
UNSUPPORTED = frozenset({errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM})
#: Any error skips the attribute (comparisons that must not fail on one).
ANY = frozenset(errno.errorcode)

_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP)

Path = str | bytes


def list_xattrs(path: Path) -> list[str]:
    """The xattr names of ``path`` (none on a filesystem without xattr support).

    Raises:
        OSError: listing failed otherwise.
    """
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return []
        raise


def read_xattrs(
    path: Path,
    *,
    keep: Callable[[str], bool] | None = None,
    tolerate: Collection[int] = ABSENT,
) -> dict[str, bytes]:
    """Return ``name -> value`` of ``path``'s xattrs (those ``keep`` accepts).

    A filesystem without xattr support has none. Reading one whose errno is
    in ``tolerate`` leaves it out.

    Raises:
        OSError: listing or reading failed otherwise.
    """
    out: dict[str, bytes] = {}
    for name in list_xattrs(path):
        if keep is not None and not keep(name):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in tolerate:
                raise
    return out


def copy_xattrs(
    src: Path,
    dst: Path,
    *,
    keep: Callable[[str], bool] | None = None,
    tolerate: Collection[int] = ABSENT,
) -> None:
    """Copy ``src``'s xattrs (those ``keep`` accepts) to ``dst``.

    Args:
        src: where to read them.
        dst: where to set them.
        keep: which names to copy (all when None).
        tolerate: errnos that skip one attribute, reading or setting it.

    Raises:
        OSError: reading or setting failed otherwise.
    """
    for name, value in read_xattrs(src, keep=keep, tolerate=tolerate).items():
        try:
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in tolerate:
                raise
