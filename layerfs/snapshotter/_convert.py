"""Translating between layerfs values and containerd's snapshot messages.

containerd spells "no parent" as the empty string and kinds as an enum
(``VIEW=1``, ``ACTIVE=2``, ``COMMITTED=3``); times are protobuf
``Timestamp`` values; labels are a plain string map on both sides.
"""

from __future__ import annotations

from typing import Any

from layerfs import errors
from layerfs._types import Info, Kind, Mount

__all__ = ["KIND_NUMBERS", "info_message", "info_from_message", "mount_messages", "parent_or_none"]

#: layerfs kind -> containerd's ``Kind`` enum number.
KIND_NUMBERS = {Kind.VIEW: 1, Kind.ACTIVE: 2, Kind.COMMITTED: 3}


def parent_or_none(parent: str) -> str | None:
    """containerd's "" (no parent) as None."""
    return parent or None


def info_message(pb: Any, info: Info) -> Any:
    """The ``Info`` message for ``info``."""
    msg = pb.Info(
        name=info.name,
        parent=info.parent or "",
        kind=KIND_NUMBERS[info.kind],
        labels=dict(info.labels),
    )
    if info.created is not None:
        msg.created_at.FromDatetime(info.created)
    if info.updated is not None:
        msg.updated_at.FromDatetime(info.updated)
    return msg


def info_from_message(msg: Any) -> Info:
    """The ``Info`` an ``UpdateSnapshotRequest`` carries (name and labels are what count).

    Raises:
        errors.InvalidArgument: no name.
    """
    if not msg.name:
        raise errors.InvalidArgument("update: the snapshot info has no name; give the key")
    kinds = {n: k for k, n in KIND_NUMBERS.items()}
    return Info(
        name=msg.name,
        parent=msg.parent or None,
        kind=kinds.get(msg.kind, Kind.ACTIVE),
        labels=dict(msg.labels),
    )


def mount_messages(mounts: list[Mount]) -> list[dict[str, Any]]:
    """``containerd.types.Mount`` fields for ``mounts`` (protobuf builds messages from dicts)."""
    return [{"type": m.type, "source": m.source, "options": list(m.options)} for m in mounts]
