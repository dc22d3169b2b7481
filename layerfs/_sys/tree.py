"""Remove a directory tree, whatever the modes inside it.

The one recursive remover of the project. Unlike ``shutil.rmtree`` it
makes unwritable directories writable before emptying them (images ship
mode 0500 directories; overlay makes ``work/work`` mode 000), and it can
go on past a failure: a directory pinned by a mount in another namespace
(``EBUSY``) is left and the rest deleted.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import AnyStr

OnError = Callable[[str | bytes, OSError], None]


def _raise(path: str | bytes, exc: OSError) -> None:
    raise exc


def remove_tree(path: AnyStr | os.PathLike[AnyStr], on_error: OnError | None = None) -> None:
    """Remove ``path`` and everything below it; a missing ``path`` is fine.

    Args:
        path: a directory or any other object (str or bytes).
        on_error: called with the path and the error for each object that
            cannot be removed, and removal goes on; None raises the first.

    Raises:
        OSError: the first failure, when ``on_error`` is None.
    """
    report = on_error or _raise
    top = os.fspath(path)
    try:
        st = os.lstat(top)
    except FileNotFoundError:
        return
    except OSError as exc:
        report(top, exc)
        return
    if stat.S_ISDIR(st.st_mode):
        _remove_dir(top, report)
    else:
        _unlink(top, report)


def _unlink(path: str | bytes, report: OnError) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        report(path, exc)


def _remove_dir(top: AnyStr, report: OnError) -> bool:
    """Empty and remove ``top``; False when something in it could not go."""
    ok = True
    try:
        mode = os.lstat(top).st_mode
        if mode & stat.S_IRWXU != stat.S_IRWXU:
            os.chmod(top, stat.S_IMODE(mode) | stat.S_IRWXU)
    except OSError:
        pass  # the listing or the unlinks below say what is wrong
    entries: list[os.DirEntry[AnyStr]] = []
    try:
        with os.scandir(top) as it:
            entries = list(it)
    except OSError as exc:
        report(top, exc)
        ok = False
    for entry in entries:
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            ok = _remove_dir(entry.path, report) and ok
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            ok = False
            report(entry.path, exc)
    try:
        os.rmdir(top)
    except FileNotFoundError:
        pass
    except OSError as exc:
        # Not empty because a child failed: that child was reported already.
        if exc.errno != errno.ENOTEMPTY or ok:
            report(top, exc)
        return False
    return ok
