#!/usr/bin/env bash
# Latency that nginx auth_request through the sidecar adds: the same GET
# through nginx to a static upstream, once without and once with
# auth_request to cedargate (deploy/nginx/cedargate.conf.template), in one
# run. Needs nginx and wrk (apt-get install nginx-light wrk). Loopback only.
#   scripts/bench-forward-auth.sh [DURATION] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-15s}
connections=${2:-32}
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx_bin" ] || { echo "nginx is not installed"; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed"; exit 1; }

cargo build --locked --release --bins
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

bin=./target/release
$bin/cedargate-admin import --store "sqlite:$work/store.db" demo/data.json >/dev/null
$bin/cedargate token keygen --dir "$work/keys" >/dev/null
RUST_LOG=warn $bin/cedargate serve --store "sqlite:$work/store.db" --listen 127.0.0.1:18181 \
  --jwks-file "$work/keys/jwks.json" --issuer https://cedargate.invalid/dev \
  --audience cedargate-dev --allow-dev-keys &
pids+=($!)
token=$($bin/cedargate token mint --key "$work/keys/dev-key.pem" --sub dave --tenant acme \
  --groups editor --clearance 1)

sed -e 's/${NGINX_LISTEN}/127.0.0.1:18280/' -e 's/${CEDARGATE_ADDR}/127.0.0.1:18181/' \
  -e 's/${APP_ADDR}/127.0.0.1:18380/' deploy/nginx/cedargate.conf.template > "$work/guarded.conf"
mkdir -p "$work/tmp"
cat > "$work/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
error_log $work/error.log warn;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  include $work/guarded.conf;
  # The application: a static answer.
  server { listen 127.0.0.1:18380; location / { return 200 "ok\n"; } }
  # The baseline: the same proxying without auth_request.
  server {
    listen 127.0.0.1:18281;
    location / {
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
  }
}
CONF
"$nginx_bin" -p "$work" -c "$work/nginx.conf" &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS -o /dev/null http://127.0.0.1:18281/ 2>/dev/null && \
  curl -fsS -o /dev/null http://127.0.0.1:18181/readyz 2>/dev/null && break
  sleep 0.1
done

echo "check: $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" http://127.0.0.1:18280/documents/q3-report) with a token, $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18280/documents/q3-report) without"
for target in "nginx alone|18281" "nginx + auth_request via cedargate|18280"; do
  name=${target%|*}; port=${target#*|}
  echo; echo "== $name"
  wrk -t1 -c"$connections" -d"$duration" --latency -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$port/documents/q3-report" | grep -E "Requests/sec|50%|75%|90%|99%|Non-2xx"
done
