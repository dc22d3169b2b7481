"""The devmapper driver's options, validated once into a frozen dataclass.

Where the pool comes from, in order of preference:

- ``pool_name``: an existing thin-pool device the operator made;
- ``data_device`` + ``metadata_device``: block devices the driver builds
  a pool on (the metadata device is wiped the first time, unless it holds
  a thin pool's metadata already or is in use: then only ``reformat=true``
  wipes it);
- neither: sparse loop files under the driver's home, ``data_size`` and
  ``metadata_size`` big. Loopback pools are for development and tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from layerfs import errors
from layerfs._human import parse_size

__all__ = ["DevmapperOptions", "parse_size", "metadata_size_for"]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

_UNITS = {"": 1, "b": 1, "k": KIB, "m": MIB, "g": GIB, "t": 1024 * GIB}
_KNOWN = {
    "pool_name",
    "data_device",
    "metadata_device",
    "data_size",
    "metadata_size",
    "block_size",
    "skip_block_zeroing",
    "base_size",
    "fs",
    "min_free_percent",
    "discard",
    "reformat",
    "udev",
}


def _parse_bool(value: object, key: str) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise errors.InvalidArgument(f"option {key}={value!r} is not a boolean; use true or false")


def metadata_size_for(data_size: int, block_size: int) -> int:
    """The metadata device size for a pool: 48 bytes per data block, 2 MiB at least.

    Rounded up to a whole MiB and capped at the kernel's 16 GiB maximum.
    """
    need = 48 * (data_size // block_size)
    need = max(need, 2 * MIB)
    need = (need + MIB - 1) // MIB * MIB
    return min(need, 16 * GIB)


@dataclasses.dataclass(frozen=True)
class DevmapperOptions:
    """Validated driver options; see the module docstring for the pool choice.

    Attributes:
        pool_name: an existing thin-pool to use, or None.
        data_device, metadata_device: block devices to build the pool on.
        data_size, metadata_size: loop file sizes in bytes.
        block_size: pool data block size in bytes (64 KiB .. 1 GiB, multiple of 64 KiB).
        skip_block_zeroing: do not zero newly provisioned blocks.
        base_size: size of the base thin device (and so of every snapshot).
        fs: ``ext4`` or ``xfs``.
        min_free_percent: refuse new devices when free data or metadata
            space in the pool is below this percentage.
        discard: discard a device's blocks before deleting it.
        reformat: a new store may wipe a ``metadata_device`` that already
            holds thin-pool metadata (every thin device on it is lost).
            Without it such a device is refused.
        udev: ``auto`` (wait for udev events when udevd runs), ``on``, ``off``.
    """

    pool_name: str | None = None
    data_device: str | None = None
    metadata_device: str | None = None
    data_size: int = 4 * GIB
    metadata_size: int = 0
    block_size: int = 64 * KIB
    skip_block_zeroing: bool = False
    base_size: int = 10 * GIB
    fs: str = "ext4"
    min_free_percent: float = 10.0
    discard: bool = False
    reformat: bool = False
    udev: str = "auto"

    @property
    def loopback(self) -> bool:
        """The pool lives on loop files under the driver's home."""
        return self.pool_name is None and self.data_device is None

    @property
    def block_sectors(self) -> int:
        """The data block size in 512-byte sectors, as the pool table wants it."""
        return self.block_size // 512

    @classmethod
    def parse(cls, options: Mapping[str, object]) -> DevmapperOptions:
        """Validate ``options`` (strings, as given to ``Store(options=...)``).

        Raises:
            errors.InvalidArgument: an unknown key or a bad value, named.
        """
        unknown = sorted(set(options) - _KNOWN)
        if unknown:
            raise errors.InvalidArgument(
                f"unknown devmapper option(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN))}"
            )
        o = dict(options)
        block = parse_size(o.get("block_size", 64 * KIB), "block_size")
        if block % (64 * KIB) or block > GIB:
            raise errors.InvalidArgument(
                f"option block_size={o.get('block_size')!r} must be a multiple of 64K and at most 1G"
            )
        data_size = parse_size(o.get("data_size", 4 * GIB), "data_size")
        if data_size < 16 * block:
            raise errors.InvalidArgument(
                f"option data_size={o.get('data_size')!r} is too small for the pool"
            )
        meta = (
            parse_size(o["metadata_size"], "metadata_size")
            if "metadata_size" in o
            else metadata_size_for(data_size, block)
        )
        fs = str(o.get("fs", "ext4"))
        if fs not in ("ext4", "xfs"):
            raise errors.InvalidArgument(f"option fs={fs!r} is not supported; use ext4 or xfs")
        try:
            floor = float(str(o.get("min_free_percent", 10)))
        except ValueError:
            floor = -1.0
        if not 0 <= floor < 100:
            raise errors.InvalidArgument(
                f"option min_free_percent={o.get('min_free_percent')!r} must be a number from 0 to 99"
            )
        udev = str(o.get("udev", "auto"))
        if udev not in ("auto", "on", "off"):
            raise errors.InvalidArgument(f"option udev={udev!r} must be auto, on or off")
        data_dev = o.get("data_device")
        meta_dev = o.get("metadata_device")
        if (data_dev is None) != (meta_dev is None):
            raise errors.InvalidArgument(
                "options data_device and metadata_device go together; give both"
            )
        pool_name = o.get("pool_name")
        if pool_name is not None and data_dev is not None:
            raise errors.InvalidArgument(
                "give either pool_name or data_device+metadata_device, not both"
            )
        base = parse_size(o.get("base_size", 10 * GIB), "base_size")
        if base < 16 * MIB or base % 4096:
            raise errors.InvalidArgument(
                f"option base_size={o.get('base_size')!r} must be at least 16M and a multiple of 4K"
            )
        return cls(
            pool_name=str(pool_name) if pool_name is not None else None,
            data_device=str(data_dev) if data_dev is not None else None,
            metadata_device=str(meta_dev) if meta_dev is not None else None,
            data_size=data_size,
            metadata_size=meta,
            block_size=block,
            skip_block_zeroing=_parse_bool(
                o.get("skip_block_zeroing", False), "skip_block_zeroing"
            ),
            base_size=base,
            fs=fs,
            min_free_percent=floor,
            discard=_parse_bool(o.get("discard", False), "discard"),
            reformat=_parse_bool(o.get("reformat", False), "reformat"),
            udev=udev,
        )
