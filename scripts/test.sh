#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, integration and
# generated tests, and each benchmark once in test mode. Needs only Rust;
# anything else a test needs is started here and stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

# nginx, for the forward-auth integration test (the test starts and stops
# its own instance on loopback).
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "== installing nginx-light"
  apt-get update -qq
  # RUNLEVEL=1: install only; do not start the system service.
  RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test"
cargo test --locked --all-targets
