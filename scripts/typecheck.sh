#!/usr/bin/env bash
# mypy --strict over every package: the core and the services.
# The services live in top-level folders (node/, broker/, …) but install as olievlek.node, olievlek.broker,
# … (setuptools package-dir); mypy cannot follow that mapping, so we lay the installed shape out as a tree
# of symlinks under build/typecheck and check the package from there. Generated stubs (olievlek.v1) are
# read for their types but their own errors are not ours (pyproject: ignore_errors for olievlek.v1.*).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
tree=build/typecheck
rm -rf "$tree"
mkdir -p "$tree/olievlek"
for f in olievlek/*; do ln -s "$top/$f" "$tree/olievlek/"; done
for p in node broker cli pseudonymiser witness; do ln -s "$top/$p" "$tree/olievlek/$p"; done
cd "$tree"
exec "$top/.venv/bin/mypy" --config-file "$top/pyproject.toml" --cache-dir "$top/.mypy_cache" -p olievlek "$@"
