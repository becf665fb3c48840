#!/usr/bin/env bash
# Stripe webhooks of cedargate-admin against Stripe's own Python library
# (PyPI `stripe`, installed into .tools/venv): signatures it makes and
# judges, and the events' effect on tenants (scripts/stripe_webhook.py).
# Uses the debug binaries the test command built.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN_DIR:-target/debug}
if ! .tools/venv/bin/python -c 'import stripe' 2>/dev/null; then
  echo "== installing stripe into .tools/venv"
  [ -x .tools/venv/bin/python ] || python3 -m venv .tools/venv
  .tools/venv/bin/pip install -q 'stripe>=12,<17'
fi
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
# The demo tenants, acme and globex billed through Stripe.
python3 - "$work/data.json" <<'PY'
import json, sys
d = json.load(open("demo/data.json"))
for t in d["tenants"]:
    if t["tenantId"] in ("acme", "globex"):
        t["billing"] = {"provider": "stripe", "customerId": f"cus_{t['tenantId']}"}
json.dump(d, open(sys.argv[1], "w"))
PY
"$bin/cedargate-admin" import --store "sqlite:$work/store.db" --audit-spool "$work/spool" "$work/data.json" >/dev/null
"$bin/cedargate" token keygen --dir "$work/keys" >/dev/null
token=$("$bin/cedargate" token mint --key "$work/keys/dev-key.pem" --sub pat --tenant platform \
  --groups platform-admin --ttl-secs 3600)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/admin.toml" <<TOML
[billing.stripe]
tolerance_secs = 300

[[billing.stripe.prices]]
price = "price_pro"
tier = "pro"
features = ["export"]
limits = { maxDocuments = 10000, maxUsers = 50, maxStorageGB = 100, maxQueriesPerMonth = 100000 }

[[billing.stripe.prices]]
price = "price_enterprise"
tier = "enterprise"
features = ["export", "sso"]
limits = { maxDocuments = 100000, maxUsers = 1000, maxStorageGB = 1000, maxQueriesPerMonth = 1000000 }
TOML
# The secrets come from the environment, the current one and the one
# being rolled.
CEDARGATE_STRIPE_WEBHOOK_SECRETS="whsec_current_0123456789,whsec_previous_abcdef" \
RUST_LOG=warn "$bin/cedargate-admin" serve --config "$work/admin.toml" --listen "127.0.0.1:$port" \
  --store "sqlite:$work/store.db" --audit-spool "$work/spool" --jwks-file "$work/keys/jwks.json" \
  --allow-dev-keys --issuer https://cedargate.invalid/dev --audience cedargate-dev &
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
.tools/venv/bin/python scripts/stripe_webhook.py "$port" "$token"
