"""The errors layerfs raises, one class per category.

Callers test the category (``except errors.NotFound``), never the message.
Every message names the snapshot key (or path, or device) it is about and
what the caller can do next. Drivers translate their own failures (a
``dmsetup`` exit status, an ``OSError`` from a mount) into these classes;
nothing expected leaks as a raw ``OSError`` or a command-runner exception.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "LayerfsError",
    "NotFound",
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "Unsupported",
    "Busy",
    "NoSpace",
    "Corrupt",
    "from_oserror",
]


class LayerfsError(Exception):
    """Base class of every error layerfs raises on purpose."""


class NotFound(LayerfsError):
    """The named snapshot, layer, driver or device does not exist.

    Raised by lookups (``stat``, ``mounts``, ``remove``...) and by ``prepare``
    when the parent is missing. Check the name, or ``walk()`` to list.
    """


class AlreadyExists(LayerfsError):
    """A snapshot with that key or name exists already.

    Keys and names share one space. Pick another key, or remove the old one.
    """


class FailedPrecondition(LayerfsError):
    """The operation is not allowed in the snapshot's current state.

    Examples: committing a view, using an active snapshot as a parent,
    removing a snapshot that still has children, reopening a store with a
    different driver. The message says which state is wrong.
    """


class InvalidArgument(LayerfsError):
    """The input is malformed: a bad key, a bad filter, a bad or unsafe tar.

    Nothing was stored; fix the input and try again.
    """


class Unsupported(LayerfsError):
    """This machine, kernel or backing filesystem cannot do what was asked.

    The message names the missing feature or limit. Pick another driver or
    another backing filesystem.
    """


class Busy(LayerfsError):
    """A resource is in use: a mounted snapshot, an open device.

    Unmount it or stop what holds it, then retry.
    """


class NoSpace(LayerfsError):
    """The backing storage (disk, thin pool) is out of space or below its floor.

    Free space or grow the pool, then retry.
    """


class Corrupt(LayerfsError):
    """Stored state is inconsistent in a way layerfs cannot repair by itself.

    Run ``store.check()`` to see the problems; ``check(repair=True)`` fixes
    what it can.
    """


def from_oserror(exc: OSError, what: str) -> LayerfsError:
    """Turn an ``OSError`` from a syscall into the matching layerfs error.

    Args:
        exc: the error raised by the syscall.
        what: a short phrase naming the object and the action, used as the
            start of the message ("mount snapshot 'web'").

    Returns:
        An instance of the most specific category; ``LayerfsError`` when the
        errno has no better match.
    """
    code = exc.errno
    text = f"{what}: {exc.strerror or exc}"
    if code == _errno.ENOENT:
        return NotFound(text)
    if code == _errno.EEXIST:
        return AlreadyExists(text)
    if code in (_errno.EBUSY, _errno.ETXTBSY):
        return Busy(text + " (unmount it or stop what holds it, then retry)")
    if code in (_errno.ENOSPC, _errno.EDQUOT):
        return NoSpace(text + " (free space, then retry)")
    if code in (_errno.EINVAL, _errno.ENAMETOOLONG):
        return InvalidArgument(text)
    if code in (_errno.ENOSYS, _errno.EOPNOTSUPP, _errno.ENODEV, _errno.EPERM):
        return Unsupported(text)
    if code in (_errno.EUCLEAN, _errno.EIO):
        return Corrupt(text + " (run check())")
    return LayerfsError(text)
