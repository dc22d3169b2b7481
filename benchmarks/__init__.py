"""``layerfs bench``: compare the storage drivers on this machine.

How a run is put together (each module has one job):

- ``cli``: the command line (``main(argv)``), progress display, output files;
- ``runner``: scratch dir, columns, rounds (warm-up, interleaved runs), results;
- ``columns``: which columns exist (native, copy, overlay, fuse, fuse-nopt,
  devmapper, fuse-overlayfs), why one is missing, how each is built;
- ``targets``: the one interface workloads use, over a ``Store``, a plain
  directory (native) or a peer union filesystem program;
- ``scratch``: one loop-backed filesystem per column (direct-I/O loop);
- ``cleanup``: undo steps, a sweep of mounts, loops and dm devices, signals;
- ``workload`` and ``workloads/``: the base class and one module per workload;
- ``tree``: realistic layer contents from the Python standard library;
- ``stats``: medians, percentiles, ratios to native; ``report``: what the
  tables say (ratios, best driver, notes), markdown, CSV, JSON and
  ``--compare``; ``layout``: fitting a table into a width without cutting a
  figure; ``render``: drawing it (rich boxes, plain text, markdown);
  ``plot``: the PNG chart.

A new workload is one module in ``workloads/`` defining a ``Workload``
subclass as ``WORKLOAD`` and an entry in ``workloads.NAMES``. A new driver
is one ``ColumnSpec`` in ``columns.COLUMNS``.
"""
