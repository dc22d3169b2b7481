"""Filesystem operations as data, applied the same way to a snapshot and to a reference dir.

A layer in a scenario is a list of ``Op`` tuples; ``apply_ops`` performs
them under a root directory. Running the same list on a mounted snapshot
and on a plain directory, then comparing the two trees, is how the shared
suite checks that a driver gives exactly the tree the steps describe.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from typing import Any

Op = tuple[Any, ...]


def apply_ops(root: str, ops: Iterable[Op]) -> None:
    """Perform ``ops`` under ``root``.

    Ops: ``("write", path, bytes)``, ``("append", path, bytes)``,
    ``("mkdir", path)``, ``("rm", path)``, ``("rmtree", path)``,
    ``("chmod", path, mode)``, ``("chown", path, uid, gid)``,
    ``("rename", old, new)``, ``("link", existing, new)``,
    ``("symlink", target, path)``, ``("mkfifo", path)``,
    ``("setxattr", path, name, value)``, ``("truncate", path, size)``.
    """
    for op in ops:
        name, args = op[0], op[1:]
        p = lambda rel: os.path.join(root, rel)  # noqa: E731
        if name == "write":
            os.makedirs(os.path.dirname(p(args[0])), exist_ok=True)
            with open(p(args[0]), "wb") as f:
                f.write(args[1])
        elif name == "append":
            with open(p(args[0]), "ab") as f:
                f.write(args[1])
        elif name == "mkdir":
            os.makedirs(p(args[0]), exist_ok=True)
        elif name == "rm":
            os.unlink(p(args[0]))
        elif name == "rmtree":
            shutil.rmtree(p(args[0]))
        elif name == "chmod":
            os.chmod(p(args[0]), args[1])
        elif name == "chown":
            os.lchown(p(args[0]), args[1], args[2])
        elif name == "rename":
            os.rename(p(args[0]), p(args[1]))
        elif name == "link":
            os.link(p(args[0]), p(args[1]))
        elif name == "symlink":
            os.symlink(args[0], p(args[1]))
        elif name == "mkfifo":
            os.mkfifo(p(args[0]))
        elif name == "setxattr":
            os.setxattr(p(args[0]), args[1], args[2], follow_symlinks=False)
        elif name == "truncate":
            os.truncate(p(args[0]), args[1])
        else:
            raise ValueError(f"unknown op {name!r}")


def graph_layers(count: int, privileged: bool | None = None) -> list[list[Op]]:
    """A chain of ``count`` layers in the spirit of moby's graphtest.

    Layers rewrite, delete, chown, rename, hard-link and re-create files
    and directories, including deleting a directory and re-creating it
    (which overlay records as an opaque directory). Without privileges
    (``privileged`` defaults to "running as root") the chown steps are left out.
    """
    if privileged is None:
        privileged = os.geteuid() == 0
    layers: list[list[Op]] = [
        [
            ("mkdir", "etc"),
            ("write", "etc/hosts", b"127.0.0.1 localhost\n"),
            ("mkdir", "usr/bin"),
            ("write", "usr/bin/tool", b"#!/bin/sh\necho v0\n"),
            ("chmod", "usr/bin/tool", 0o755),
            ("symlink", "usr/bin", "bin"),
            ("mkdir", "var/lib/data"),
            ("write", "var/lib/data/a", b"a0"),
            ("write", "var/lib/data/b", b"b0"),
            ("mkfifo", "var/fifo"),
            ("mkdir", "keep"),
            ("write", "keep/x", b"x"),
        ]
    ]
    for i in range(1, count):
        ops: list[Op] = []
        step = i % 8
        if step == 0:
            ops.append(("write", "etc/hosts", f"127.0.0.1 localhost layer{i}\n".encode()))
        elif step == 1:
            ops.append(("write", f"files/f{i}", os.urandom(64) + str(i).encode()))
            if i > 8:
                ops.append(("rm", f"files/f{i - 8}"))
        elif step == 2:
            if privileged:
                ops.append(("chown", "etc/hosts", i % 7, i % 5))
            ops.append(("chmod", "keep", 0o700 if i % 16 == 2 else 0o755))
        elif step == 3:
            ops.append(("rename", "var/lib/data/a", "var/lib/data/a2"))
            ops.append(("rename", "var/lib/data/a2", "var/lib/data/a"))
            ops.append(("append", "var/lib/data/a", f"+{i}".encode()))
        elif step == 4:
            ops.append(("link", "usr/bin/tool", f"usr/bin/tool-link{i}"))
        elif step == 5:
            ops.append(("rmtree", "var/lib/data"))
            ops.append(("mkdir", "var/lib/data"))
            ops.append(("write", "var/lib/data/a", f"a{i}".encode()))
            ops.append(("write", "var/lib/data/b", f"b{i}".encode()))
        elif step == 6:
            ops.append(("rm", f"usr/bin/tool-link{i - 2}"))
            ops.append(("setxattr", "etc/hosts", "user.layer", str(i).encode()))
        else:
            ops.append(("mkdir", f"dirs/d{i}"))
            ops.append(("write", f"dirs/d{i}/file", b"d"))
            if i > 16:
                ops.append(("rmtree", f"dirs/d{i - 16}"))
        layers.append(ops)
    return layers
