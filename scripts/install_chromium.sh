#!/usr/bin/env bash
# Debian's Chromium for the browser test of the demo (tests/serving/test_demo_browser.py): Playwright drives
# /usr/bin/chromium, since `playwright install` downloads a browser from a site this project does not use.
# Called by `make test`; does nothing when Chromium is already there.
set -euo pipefail
CHROMIUM=${GR2_CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "no $CHROMIUM and no apt-get: install Chromium and point GR2_CHROMIUM at it" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
export DEBIAN_FRONTEND=noninteractive
echo "installing Debian's chromium (for the browser test)"
$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 \
  || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; }
[ -x "$CHROMIUM" ] || { echo "chromium installed, but $CHROMIUM is missing" >&2; exit 1; }
