"""Reflink copies (FICLONE) with a copy_file_range fallback."""

from __future__ import annotations

import errno
import fcntl
import os

FICLONE = 0x40049409  # _IOW(0x94, 9, int)

_NO_REFLINK = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS}


def reflink(src_fd: int, dst_fd: int) -> bool:
    """Share ``src_fd``'s blocks with ``dst_fd``; False when the filesystem cannot."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
        return True
    except OSError as exc:
        if exc.errno in _NO_REFLINK:
            return False
        raise


def copy_data(src_fd: int, dst_fd: int, size: int) -> None:
    """Copy ``size`` bytes: reflink first, then copy_file_range, then plain read/write."""
    if size == 0 or reflink(src_fd, dst_fd):
        return
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(src_fd, dst_fd, size - done, done, done)
            if n == 0:
                break
            done += n
        return
    except OSError as exc:
        if exc.errno not in _NO_REFLINK:
            raise
    while True:
        chunk = os.pread(src_fd, 1 << 20, done)
        if not chunk:
            return
        os.pwrite(dst_fd, chunk, done)
        done += len(chunk)
