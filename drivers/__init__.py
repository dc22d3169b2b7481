"""Built-in storage drivers, shipped as ``layerfs.drivers.<name>``."""
