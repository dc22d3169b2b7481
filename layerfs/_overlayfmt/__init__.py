"""The overlay on-disk format: the one place that knows how overlayfs stores a union.

The ``overlay`` and ``fuse`` drivers keep snapshots in this format, and
layer apply and export read and write it, so they all use these modules
and nothing else writes a whiteout or reads an opaque mark.

Facts of overlayfs's format this package relies on (kernel overlayfs with
``index=off``, ``redirect_dir=off``, ``metacopy=off``):

- a deleted name is a character device with device number 0/0 (a
  *whiteout*; the kernel makes it mode 000);
- a directory whose ``<prefix>overlay.opaque`` xattr is ``y`` hides every
  entry below it in the layers underneath;
- a non-directory hides everything below its name in the layers underneath;
- ``<prefix>`` is ``trusted.`` (needs CAP_SYS_ADMIN), or ``user.`` with the
  ``userxattr`` mount option (kernel 5.11+): one store uses one of them;
- names in overlay's own namespace that a user sets on a file are stored
  escaped (``<prefix>overlay.overlay.X``, kernel 6.7+).

Modules (import the one needed: the FUSE server loads ``marks`` and
``lower`` only, which import nothing else of layerfs):

- ``marks``: whiteouts, opaque directories, the xattr namespace;
- ``lower``: lookups and listings through a stack of layers;
- ``layout``: a driver home (``snapshots/<id>/{fs,work,link}``, short links)
  and which xattr namespace a store uses;
- ``filesystem``: whether a filesystem can hold overlay-format layers.
"""
