#!/usr/bin/env bash
# Property-based API test of `cedargate-admin serve` with schemathesis
# (from PyPI, installed into .tools/venv): every operation of
# docs/openapi.json is called with generated input, as a platform
# administrator; no response may be a 5xx or disagree with the document.
# Uses the debug binaries the test command built. (hypothesis is pinned:
# newer releases break schemathesis 3.)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN_DIR:-target/debug}
if [ ! -x .tools/venv/bin/schemathesis ]; then
  echo "== installing schemathesis into .tools/venv"
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install -q 'schemathesis>=3.39,<4' 'hypothesis<6.125'
fi
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
"$bin/cedargate-admin" import --store "sqlite:$work/store.db" --audit-spool "$work/spool" demo/data.json >/dev/null
"$bin/cedargate" token keygen --dir "$work/keys" >/dev/null
token=$("$bin/cedargate" token mint --key "$work/keys/dev-key.pem" --sub pat --tenant platform \
  --groups platform-admin --ttl-secs 3600)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn "$bin/cedargate-admin" serve --listen "127.0.0.1:$port" --store "sqlite:$work/store.db" \
  --audit-spool "$work/spool" --jwks-file "$work/keys/jwks.json" --allow-dev-keys \
  --issuer https://cedargate.invalid/dev --audience cedargate-dev &
pid=$!
python3 - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit("cedargate-admin did not become ready")
PY
.tools/venv/bin/schemathesis run docs/openapi.json --base-url "http://127.0.0.1:$port" \
  -H "Authorization: Bearer $token" --checks all --hypothesis-max-examples "${EXAMPLES:-60}" \
  --hypothesis-seed 1 --no-color
