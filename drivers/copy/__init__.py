"""The ``copy`` driver: every snapshot is a full copy of its parent's tree.

No copy-on-write at the filesystem level, so it runs on any filesystem and
needs no privileges; file data is shared by reflink (``FICLONE``) where the
filesystem supports it (XFS, btrfs), else copied with ``copy_file_range``.
It is the baseline the bench compares against and the reference the other
drivers are tested against.
"""

from .driver import CopyDriver as CopyDriver

__all__ = ["CopyDriver"]
