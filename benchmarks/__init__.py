"""`layerfs bench`: workloads and the runner."""
