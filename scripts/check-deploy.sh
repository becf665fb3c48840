#!/usr/bin/env bash
# Checks deploy/: CloudFormation with cfn-lint, Kubernetes manifests with
# kubernetes-validate (strict, offline schemas), the nginx example with
# `nginx -t`, the Caddyfile with `caddy validate`, and scripts/check_deploy.py (IAM table ARNs against the
# template's tables and the store's table names, the ECS task definition).
# Tools from PyPI into .tools/venv.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.tools/venv/bin/python
[ -x "$py" ] || python3 -m venv .tools/venv
if ! "$py" -c 'import cfnlint, kubernetes_validate' 2>/dev/null; then
  echo "== installing cfn-lint and kubernetes-validate into .tools/venv"
  .tools/venv/bin/pip install -q 'cfn-lint>=1,<2' 'kubernetes-validate>=1.30'
fi
echo "== cfn-lint deploy/aws/*.yaml"
.tools/venv/bin/cfn-lint deploy/aws/*.yaml
echo "== kubernetes-validate --strict deploy/kubernetes/*.yaml"
.tools/venv/bin/kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml
echo "== nginx -t deploy/nginx/cedargate.conf.template"
nginx=$(command -v nginx || echo /usr/sbin/nginx)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/logs"
NGINX_LISTEN=127.0.0.1:18080 CEDARGATE_ADDR=127.0.0.1:8180 APP_ADDR=127.0.0.1:3000 \
  "$py" -c 'import os,sys; sys.stdout.write(os.path.expandvars(open("deploy/nginx/cedargate.conf.template").read()))' \
  > "$work/cedargate.conf"
cat > "$work/nginx.conf" <<CONF
pid $work/nginx.pid;
error_log $work/logs/error.log;
events {}
http {
  access_log off;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fastcgi;
  uwsgi_temp_path $work/uwsgi;
  scgi_temp_path $work/scgi;
  include $work/cedargate.conf;
}
CONF
"$nginx" -t -q -p "$work" -c "$work/nginx.conf"
echo "== caddy validate deploy/caddy/Caddyfile"
caddy=$(command -v caddy || echo /usr/bin/caddy)
CADDY_LISTEN=http://127.0.0.1:18081 CADDY_BIND=127.0.0.1 CEDARGATE_ADDR=127.0.0.1:8180 \
  APP_ADDR=127.0.0.1:3000 XDG_DATA_HOME="$work" XDG_CONFIG_HOME="$work" HOME="$work" \
  "$caddy" validate --adapter caddyfile --config deploy/caddy/Caddyfile 2>"$work/caddy.log" \
  || { cat "$work/caddy.log"; exit 1; }
echo "== scripts/check_deploy.py"
"$py" scripts/check_deploy.py
echo "deploy: ok"
