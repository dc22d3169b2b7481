"""The unix socket the server listens on: one live server per path, mode 0600.

A lock file beside the socket (``<socket>.lock``, ``flock``) says whether a
live server holds the path: the lock goes away with its process, however
it dies; it stays on disk (deleting it would let two servers lock two
different files of one name). Holding the lock, a socket file left by a
dead server is stale and is replaced. A path that is not a socket is
never deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from layerfs import errors

__all__ = ["claim"]


@contextlib.contextmanager
def claim(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold ``path`` for one server for the block; remove the socket after.

    The caller binds the socket (with umask 0177, so it is created 0600).

    Raises:
        errors.Busy: a live server holds ``path``.
        errors.FailedPrecondition: ``path`` exists and is not a socket.
    """
    sock = Path(path).absolute()
    try:
        sock.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        fd = os.open(f"{sock}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise errors.from_oserror(exc, f"create socket directory or lock for {sock}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise errors.Busy(
                f"socket {sock}: another layerfs serve is running on it; stop it or pick "
                "another --socket"
            ) from None
        try:
            mode = os.lstat(sock).st_mode
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(mode):
                raise errors.FailedPrecondition(
                    f"socket path {sock} exists and is not a socket; move it away or pick "
                    "another --socket"
                )
            sock.unlink()  # left by a server that died
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield sock
        finally:
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
    finally:
        os.close(fd)
