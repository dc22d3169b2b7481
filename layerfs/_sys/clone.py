"""Copy a file's data inside the kernel: a reflink (FICLONE), else copy_file_range.

The one copy routine of the project: layer trees (``_fstree``), the
``fuse`` driver's copy-up and anything else that duplicates a file call
``copy_data``. Python never touches the bytes unless the filesystem
refuses both kernel paths (rare: some network and FUSE filesystems).
"""

from __future__ import annotations

import errno
import fcntl
import os

FICLONE = 0x40049409  # _IOW(0x94, 9, int)

#: errnos that mean "this filesystem (pair) cannot do it", not "the copy failed".
#: EBADF: FICLONE on a file opened for append, or an O_PATH descriptor.
_NO_REFLINK = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EBADF}
_NO_COPY_RANGE = {errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOSYS}

#: copy_file_range is asked for at most this much at once (the kernel copies
#: less per call anyway; a bound keeps each call interruptible).
_CHUNK = 1 << 30


def reflink(src_fd: int, dst_fd: int) -> bool:
    """Share ``src_fd``'s blocks with ``dst_fd``; False when the filesystem cannot."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
        return True
    except OSError as exc:
        if exc.errno in _NO_REFLINK:
            return False
        raise


def copy_data(src_fd: int, dst_fd: int, size: int) -> bool:
    """Copy ``size`` bytes from offset 0: reflink, else copy_file_range, else read/write.

    Stops early when the source is shorter than ``size`` (it shrank).

    Returns:
        True when the data was reflinked (no byte was written: the copy
        shares the source's extents), False when it was copied.

    Raises:
        OSError: a real I/O error (ENOSPC, EIO...).
    """
    if size == 0:
        return False
    if reflink(src_fd, dst_fd):
        return True
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(src_fd, dst_fd, min(_CHUNK, size - done), done, done)
            if n == 0:
                return False  # the source shrank under us
            done += n
        return False
    except OSError as exc:
        if exc.errno not in _NO_COPY_RANGE:
            raise
    # Last resort for filesystems refusing both kernel paths.
    while done < size:
        chunk = os.pread(src_fd, min(1 << 20, size - done), done)
        if not chunk:
            break
        os.pwrite(dst_fd, chunk, done)
        done += len(chunk)
    return False
