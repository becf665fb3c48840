#!/usr/bin/env bash
# Tests the TypeScript side: the @cedargate/client package
# (clients/typescript) and the CDK constructs (deploy/cdk). For each: npm ci,
# strict type check, lint, build, tests. The client's tests start the real
# cedargate and cedargate-admin from target/debug on free loopback ports in
# a temporary directory; its generated types must match docs/openapi.json;
# `npm pack` must make a package a strict TypeScript project can use. The
# CDK example app is synthesized offline, its templates linted with cfn-lint
# and compared with deploy/aws by scripts/check_deploy.py --cdk. Needs Node
# 20 and the Rust debug binaries; ends with `typescript: ok`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

for bin in cedargate cedargate-admin; do
  if [ ! -x "target/debug/$bin" ]; then
    echo "target/debug/$bin is missing: build the Rust binaries first (cargo build)" >&2
    exit 1
  fi
done

py=.tools/venv/bin/python
[ -x "$py" ] || python3 -m venv .tools/venv
if ! "$py" -c 'import cfnlint' 2>/dev/null; then
  echo "== installing cfn-lint into .tools/venv"
  .tools/venv/bin/pip install -q 'cfn-lint>=1,<2'
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
npm_ci() { npm ci --no-audit --no-fund --loglevel=error; }

echo "== clients/typescript: npm ci"
cd "$root/clients/typescript"
npm_ci
echo "== clients/typescript: tsc --noEmit (strict)"
npx tsc --noEmit -p tsconfig.json
echo "== clients/typescript: eslint"
npx eslint .
echo "== clients/typescript: src/generated/openapi.ts is current with docs/openapi.json"
npx openapi-typescript ../../docs/openapi.json -o "$work/openapi.ts" >"$work/generate.log" 2>&1 \
  || { cat "$work/generate.log"; exit 1; }
if ! diff -u src/generated/openapi.ts "$work/openapi.ts"; then
  echo "src/generated/openapi.ts is out of date: run 'npm run generate' in clients/typescript" >&2
  exit 1
fi
echo "== clients/typescript: build"
rm -rf dist build-test
npm run -s build
echo "== clients/typescript: tests against the real sidecar and admin service"
npm run -s build:test
node --test --test-concurrency=1 build-test/test/*.test.js

echo "== clients/typescript: npm pack, and the package in a strict consumer project"
npm pack --pack-destination "$work" --silent >"$work/pack.txt"
tarball="$work/$(tail -n 1 "$work/pack.txt")"
files=$(tar tzf "$tarball")
for f in package/package.json package/README.md package/dist/index.js package/dist/index.d.ts; do
  grep -qx "$f" <<<"$files" || { echo "the package lacks $f" >&2; exit 1; }
done
if grep -qE '^package/(src|test|build-test)/' <<<"$files"; then
  echo "the package carries sources or tests" >&2
  exit 1
fi
mkdir -p "$work/consumer"
cd "$work/consumer"
echo '{"name": "consumer", "private": true, "type": "module"}' >package.json
npm install --no-audit --no-fund --loglevel=error --offline "$tarball"
cat >consumer.ts <<'TS'
import { CedargateClient, cedargateExpress, withCedargate, KendraSearch, type Decision } from "@cedargate/client";
const client = new CedargateClient({ url: "http://127.0.0.1:8180" });
export const middleware = cedargateExpress({ client });
export const handler = withCedargate({ client }, async (_event, _context, auth) => ({ statusCode: 200, body: auth?.tenant ?? "" }));
export const search = new KendraSearch({ cedargate: client, send: async (input: { AttributeFilter?: undefined }) => input });
export const allowed = (d: Decision): boolean => d.decision === "Allow";
TS
cat >tsconfig.json <<JSON
{ "compilerOptions": { "strict": true, "module": "NodeNext", "moduleResolution": "NodeNext", "target": "ES2022",
  "noEmit": true, "skipLibCheck": false, "types": ["node"], "typeRoots": ["$root/clients/typescript/node_modules/@types"] },
  "files": ["consumer.ts"] }
JSON
"$root/clients/typescript/node_modules/.bin/tsc" -p tsconfig.json
node --input-type=module -e '
  const m = await import("@cedargate/client");
  for (const name of ["CedargateClient", "CedargateAdmin", "cedargateExpress", "withCedargate", "KendraSearch", "UnavailableError"]) {
    if (typeof m[name] !== "function") { console.error(`the package does not export ${name}`); process.exit(1); }
  }'

echo "== deploy/cdk: npm ci"
cd "$root/deploy/cdk"
npm_ci
echo "== deploy/cdk: tsc --noEmit (strict)"
npx tsc --noEmit -p tsconfig.json
echo "== deploy/cdk: eslint"
npx eslint .
echo "== deploy/cdk: build and synthesize the example app (offline)"
rm -rf build cdk.out
npx tsc -p tsconfig.json
node build/example/app.js cdk.out
ls cdk.out/*.template.json
echo "== deploy/cdk: cfn-lint on the synthesized templates"
"$root/.tools/venv/bin/cfn-lint" cdk.out/*.template.json
echo "== scripts/check_deploy.py --cdk: the constructs against deploy/aws and the store"
cd "$root"
"$py" scripts/check_deploy.py --cdk deploy/cdk/cdk.out
echo "== deploy/cdk: tests (construct assertions; each kind of drift caught)"
cd "$root/deploy/cdk"
CDK_OUT="$root/deploy/cdk/cdk.out" node --test build/test/*.test.js

echo "typescript: ok"
