"""Driver options and overlay-style mount options of the fuse union."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from layerfs import errors

__all__ = ["FuseOptions", "parse_mount_options", "split_escaped"]


@dataclasses.dataclass(frozen=True)
class FuseOptions:
    """Options of the ``fuse`` driver (``Store(options=...)``).

    Attributes:
        passthrough: ``"auto"`` uses FUSE passthrough when the kernel offers
            it; ``"off"`` serves data from the server with the writeback cache.
        threads: request threads per mounted snapshot.
    """

    passthrough: str = "auto"
    threads: int = 2

    @classmethod
    def from_mapping(cls, options: Mapping[str, str]) -> FuseOptions:
        """Validate driver options.

        Raises:
            errors.InvalidArgument: an unknown key or a bad value, named.
        """
        unknown = set(options) - {"passthrough", "threads"}
        if unknown:
            raise errors.InvalidArgument(
                f"fuse driver: unknown option(s) {', '.join(sorted(unknown))}; "
                "known: passthrough=auto|off, threads=N"
            )
        passthrough = str(options.get("passthrough", "auto"))
        if passthrough not in ("auto", "off"):
            raise errors.InvalidArgument(
                f"fuse driver: passthrough={passthrough!r}; use 'auto' or 'off'"
            )
        raw = str(options.get("threads", "2"))
        try:
            threads = int(raw)
        except ValueError:
            threads = 0
        if not 1 <= threads <= 64:
            raise errors.InvalidArgument(f"fuse driver: threads={raw!r}; use an integer 1..64")
        return cls(passthrough, threads)


def split_escaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` not preceded by a backslash, and unescape (overlay's rules)."""
    out: list[str] = []
    cur: list[str] = []
    it = iter(text)
    for ch in it:
        if ch == "\\":
            cur.append(next(it, ""))
        elif ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _split_options(text: str) -> list[str]:
    # Keep escapes for the second split of lowerdir on ':'.
    out: list[str] = []
    cur = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if ch == ",":
            out.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    out.append(cur)
    return [o for o in out if o]


def parse_mount_options(text: str) -> dict[str, object]:
    """Parse ``lowerdir=A:B,upperdir=U,workdir=W[,userxattr][,ro][,passthrough=..][,threads=N]``.

    Returns:
        ``lowers`` (list), ``upper``, ``work``, ``xattr_prefix``, ``readonly``,
        ``passthrough``, ``threads``; paths made absolute.

    Raises:
        errors.InvalidArgument: no lowerdir, upperdir without workdir, a bad value.
    """
    res: dict[str, object] = {
        "lowers": [],
        "upper": None,
        "work": None,
        "xattr_prefix": "trusted.",
        "readonly": False,
        "passthrough": "auto",
        "threads": 2,
    }
    for opt in _split_options(text):
        key, eq, value = opt.partition("=")
        if key == "lowerdir":
            res["lowers"] = [os.path.abspath(p) for p in split_escaped(value, ":") if p]
        elif key == "upperdir":
            res["upper"] = os.path.abspath(split_escaped(value, ",")[0])
        elif key == "workdir":
            res["work"] = os.path.abspath(split_escaped(value, ",")[0])
        elif key == "userxattr":
            res["xattr_prefix"] = "user."
        elif key == "ro":
            res["readonly"] = True
        elif key in ("passthrough", "threads"):
            fo = FuseOptions.from_mapping({key: value})
            res[key] = getattr(fo, key)
        # Everything else (rw, noatime, index=off, redirect_dir=off, metacopy=off,
        # dev, suid, _netdev...) is either the default here or mount(8)'s business.
    if not res["lowers"] and not res["upper"]:
        raise errors.InvalidArgument("fuse.layerfs mount: lowerdir= is required")
    if res["upper"] and not res["work"]:
        raise errors.InvalidArgument("fuse.layerfs mount: upperdir= needs workdir=")
    if res["readonly"]:
        res["upper"] = None
        res["work"] = None
    return res
