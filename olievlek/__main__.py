"""Entry point: ``python -m olievlek`` and the ``olievlek`` console script."""

from __future__ import annotations


def main() -> None:
    """Run the command-line interface (imported lazily: the core imports no service)."""
    import importlib

    importlib.import_module("olievlek.cli.app").run()


if __name__ == "__main__":
    main()
