#!/usr/bin/env bash
# The admin console in a real browser: Selenium drives Debian's headless
# Chromium through sign-in (an OpenID Connect stand-in issuer), documents,
# audit log, access checker, export and the refusals
# (tests/browser/test_console.py). Uses the binaries in $BIN_DIR (default
# target/debug); starts and stops its own servers on loopback. Screenshots
# go to $SCREENSHOT_DIR (default: a new directory under /tmp, printed).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN_DIR:-target/debug}

if ! command -v chromedriver >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium and chromium-driver"
  apt-get update -qq
  # RUNLEVEL=1: install only; do not start the system services.
  RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null
fi

if ! .tools/venv/bin/python -c 'import selenium, jwt, cryptography, requests' 2>/dev/null; then
  echo "== installing selenium, PyJWT, cryptography and requests into .tools/venv"
  [ -x .tools/venv/bin/python ] || python3 -m venv .tools/venv
  .tools/venv/bin/pip install -q 'selenium>=4.20,<5' 'PyJWT>=2.8,<3' 'cryptography>=42,<60' \
    'requests>=2.31,<3'
fi

# Selenium must use the chromedriver above, never download one.
export SE_OFFLINE=true
exec .tools/venv/bin/python tests/browser/test_console.py --bin "$bin"
