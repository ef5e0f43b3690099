"""Entry point: ``python -m olievlek`` and the ``olievlek`` console script."""

from __future__ import annotations


def _language_from_argv(argv: list[str]) -> None:
    """``--lang`` before the CLI is imported: its help texts are translated when it loads."""
    import os

    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv):
            os.environ["OLIEVLEK_LANG"] = argv[i + 1]
        elif arg.startswith("--lang="):
            os.environ["OLIEVLEK_LANG"] = arg.split("=", 1)[1]


def main() -> None:
    """Run the command-line interface (imported lazily: the core imports no service)."""
    import importlib
    import sys

    _language_from_argv(sys.argv[1:])
    importlib.import_module("olievlek.cli.app").run()


if __name__ == "__main__":
    main()
