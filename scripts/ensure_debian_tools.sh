#!/usr/bin/env bash
# Optional system tools the tests use when present: Graphviz `dot` for `policy flows --format svg`,
# Chromium (headless) to render the monitoring dashboard.
# Installed from Debian's packages when missing and apt is usable (CI runs as root); otherwise the
# tests take the documented fallback and say so. Never fails the build.
set -u
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} from Debian packages"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 \
    || echo "could not install ${missing[*]}; tests use the fallback"
else
  echo "not root or no apt: ${missing[*]} not installed; tests use the fallback"
fi
exit 0
