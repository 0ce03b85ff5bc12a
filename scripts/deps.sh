#!/usr/bin/env bash
# What the test suite needs besides Rust, installed when missing (idempotent:
# a no-op on a machine that has it all). Run by scripts/test.sh and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: a C compiler (ring, rustls' crypto, compiles some C),
# nats-server (the fleet tests start real JetStream servers; Debian 12 ships 2.9.10)
# systemd (for systemd-analyze), strace and faketime.
sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
# systemd-analyze checks packaging/systemd/weir.service (tests/it/packaging.rs); a 3 MB package.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# strace measures the system calls weir makes against the unit's SystemCallFilter (same test).
command -v strace >/dev/null 2>&1 || missing+=(strace)
# libfaketime steps the clock the real binary sees (tests/it/clock.rs).
compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || missing+=(faketime)
# The console's browser test (tests/it/console.rs) drives Debian's chromium with
# playwright-core from tests/console (no browser download: it uses /usr/bin/chromium).
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
# componentize-py builds the Python example plugins (plugins/python), in a venv.
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3 python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

# playwright-core, pinned by tests/console/package-lock.json (again only when the lockfile changed).
lock=tests/console/package-lock.json installed=tests/console/node_modules/.package-lock.json
if [ ! -f "$installed" ] || [ "$lock" -nt "$installed" ]; then
  npm ci --prefix tests/console --no-audit --no-fund
fi

# The JavaScript/TypeScript plugin toolchain (componentize-qjs, jco, typescript),
# pinned by plugins/js/package-lock.json: tests/components/build.rs builds the
# JS examples with it (again only when the lockfile changed).
lock=plugins/js/package-lock.json installed=plugins/js/node_modules/.package-lock.json
if [ ! -f "$installed" ] || [ "$lock" -nt "$installed" ]; then
  npm ci --prefix plugins/js --no-audit --no-fund
fi

# The Python plugin toolchain (componentize-py), pinned with hashes by
# plugins/python/requirements.txt, in a venv of its own.
venv=plugins/python/.venv
if [ ! -x "$venv/bin/componentize-py" ] || [ plugins/python/requirements.txt -nt "$venv/bin/componentize-py" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r plugins/python/requirements.txt
  touch "$venv/bin/componentize-py"
fi
