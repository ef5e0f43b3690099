"""The olievlek command line (installed as ``olievlek.cli``)."""
