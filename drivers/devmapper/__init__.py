"""The ``devmapper`` driver: a device-mapper thin device per snapshot.

Modules, lowest first: ``dmsetup`` (one function per dmsetup verb, errno
mapping), ``status`` (pool and thin status lines), ``options``, ``udev``
(device nodes without udev cookies), ``pool`` (finding, building and
messaging the thin pool), ``journal`` (records and the open transaction in
the store's database), ``faults`` (crash points for tests) and ``driver``.
"""

from .driver import DevmapperDriver as DevmapperDriver

__all__ = ["DevmapperDriver"]
