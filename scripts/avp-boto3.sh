#!/usr/bin/env bash
# The Verified Permissions API of the sidecar through boto3 (from PyPI,
# installed into .tools/venv): the four data-plane calls and the errors, as
# a Python AWS client sees them. Uses the debug binaries the test command
# built.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN_DIR:-target/debug}
if ! .tools/venv/bin/python -c 'import boto3' 2>/dev/null; then
  echo "== installing boto3 into .tools/venv"
  [ -x .tools/venv/bin/python ] || python3 -m venv .tools/venv
  .tools/venv/bin/pip install -q 'boto3>=1.34'
fi
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
"$bin/cedargate-admin" import --store "sqlite:$work/store.db" --audit-spool "$work/spool" demo/data.json >/dev/null
"$bin/cedargate" token keygen --dir "$work/keys" >/dev/null
mint() { "$bin/cedargate" token mint --key "$work/keys/dev-key.pem" --tenant acme "$@"; }
ann=$(mint --sub ann --groups admin)
stranger=$(mint --sub sam --groups admin --audience another-client)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/cedargate.toml" <<TOML
listen = "127.0.0.1:$port"
store = "sqlite:$work/store.db"
identity = "trusted"

[audit]
spool_dir = "$work/spool"

[[avp.stores]]
id = "cedargate"
source = "git"
# The Git store decides as the native API (semantics "cedargate"): token
# principals are CedarGate::User::"<sub>" in their token's tenant.
[avp.stores.identity]
user_pool_id = "us-east-1_DEV"
client_ids = ["cedargate-dev"]
issuer = "https://cedargate.invalid/dev"
jwks_file = "$work/keys/jwks.json"
allow_dev_keys = true
TOML
RUST_LOG=warn "$bin/cedargate" serve --config "$work/cedargate.toml" &
pid=$!
.tools/venv/bin/python scripts/avp_boto3.py "$port" "$ann" "$stranger"
