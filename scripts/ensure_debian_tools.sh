#!/usr/bin/env bash
# Installs every Debian package a test needs (scripts/debian-packages.txt) and fails, naming the package,
# when one cannot be installed: a test of a real component must run, never skip for want of its tool.
#   scripts/ensure_debian_tools.sh           install what is missing (as root, with apt), then check
#   scripts/ensure_debian_tools.sh --check   only check; exit 1 naming what is missing
set -u
cd "$(dirname "$0")/.."
list=scripts/debian-packages.txt

missing_packages() {
  local cmd pkg out=()
  while read -r cmd pkg; do
    case "$cmd" in ''|'#'*) continue ;; esac
    command -v "$cmd" >/dev/null 2>&1 || out+=("$pkg")
  done < "$list"
  [ ${#out[@]} -eq 0 ] || printf '%s\n' "${out[@]}" | sort -u | tr '\n' ' '
}

missing=$(missing_packages)
[ -z "$missing" ] && exit 0
if [ "${1:-}" != "--check" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages: $missing"
    # shellcheck disable=SC2086 # one word per package
    if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
          apt-get install -y -qq --no-install-recommends $missing) >/tmp/olievlek-apt.log 2>&1; then
      tail -n 20 /tmp/olievlek-apt.log >&2
    fi
    missing=$(missing_packages)
    [ -z "$missing" ] && exit 0
  else
    echo "not root or no apt-get: cannot install what the tests need" >&2
  fi
fi
missing=${missing% }
echo "missing Debian packages the tests need: $missing (install: apt-get install --no-install-recommends $missing)" >&2
exit 1
