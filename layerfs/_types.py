"""The plain values the public API passes around: Kind, Info, Usage, Mount, Change."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType


class Kind(enum.Enum):
    """What a snapshot is.

    ``ACTIVE`` is writable and has a *key*; ``VIEW`` is a read-only look at a
    parent; ``COMMITTED`` is frozen, has a *name*, and is the only kind that
    can be a parent.
    """

    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


def _frozen_labels(labels: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(labels or {}))


@dataclasses.dataclass(frozen=True)
class Info:
    """What the store knows about one snapshot.

    Attributes:
        name: the key (active, view) or name (committed).
        parent: the parent's name, or None for a base snapshot.
        kind: see ``Kind``.
        labels: free-form string labels; change them with ``Store.update``.
        created: creation time (UTC).
        updated: last metadata change (UTC).
    """

    name: str
    parent: str | None
    kind: Kind
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    created: datetime | None = None
    updated: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _frozen_labels(self.labels))

    def with_labels(self, labels: Mapping[str, str]) -> Info:
        """Return a copy with ``labels`` replaced (for ``Store.update``)."""
        return dataclasses.replace(self, labels=_frozen_labels(labels))


@dataclasses.dataclass(frozen=True)
class Usage:
    """Disk used by a snapshot itself, not counting its parents.

    Attributes:
        size: bytes.
        inodes: number of inodes (files, directories, links...).
    """

    size: int = 0
    inodes: int = 0


class ChangeKind(enum.Enum):
    """How a path differs between a layer and its parent."""

    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"


@dataclasses.dataclass(frozen=True, order=True)
class Change:
    """One changed path, relative to the snapshot root, without a leading slash."""

    kind: ChangeKind
    path: str


@dataclasses.dataclass(frozen=True)
class Mount:
    """One mount, in the shape of ``mount(8)``: ``mount -t type -o options source target``.

    A list of these, applied in order on one target, gives the snapshot's
    tree. Only kernel filesystem types appear here (``bind``, ``overlay``,
    ``ext4``, ``xfs``, ``fuse.layerfs``), so a caller can mount it with
    plain ``mount(2)`` or ``mount(8)``.
    """

    type: str
    source: str
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))

    def mount(self, target: str) -> None:
        """Mount this on ``target`` (an existing directory); needs privileges.

        Raises:
            layerfs.errors.Unsupported: no permission, or an unknown type.
            layerfs.errors.InvalidArgument: the kernel rejected the options.
        """
        # Imported here, not at the top: ``import layerfs`` loads this module,
        # and processes that never mount need not load the syscall layer.
        from ._mounting import mount_one

        mount_one(self, target)
