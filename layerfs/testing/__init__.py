"""Test helpers that outside drivers can run against themselves.

``suite``: the shared snapshot scenarios; ``oci``: OCI images built
locally (busybox, Debian minbase, deep chains); ``containerd``: a private
containerd, ``layerfs serve`` and a registry, for end-to-end tests and the
``containers`` bench workload.
"""
