"""The olievlek command line (installed as ``olievlek.cli``)."""

import os

# Piped output (tests, logs) would otherwise be cut to 80 columns and fold table cells.
os.environ.setdefault("COLUMNS", "160")
