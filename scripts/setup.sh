#!/usr/bin/env bash
# Installs what beanbox needs to build, demo and test, when it is missing:
# beanstalkd (Debian package), the wasm32-wasip2 Rust target, and a Python
# venv with greenstalk for the seed-compatibility test and componentize-py for
# the Python task (tasks/hello-py), componentize-js for the JavaScript task
# (tasks/hello-js/node_modules, from its package-lock.json), and, with
# --tests, Chromium with its WebDriver (Debian packages) for the dashboard's
# browser test. Safe to run again.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sudo=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then sudo="sudo"; fi

apt_install() {
    echo "setup: installing $* (Debian packages)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! command -v beanstalkd >/dev/null; then
    apt_install beanstalkd
    # Debian's package may enable a system service on :11300; beanbox's
    # demo and tests run their own servers, so leave the system one alone.
fi

# The dashboard test drives headless Chromium through chromedriver (only the
# tests need it: ~300 MB the demo and the bench do without).
if [ "${1:-}" = "--tests" ] \
    && { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
    apt_install chromium chromium-driver
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found; install Rust 1.95+ with rustup (https://rustup.rs)" >&2
    exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 Rust target" >&2
    rustup target add wasm32-wasip2 >&2
fi

# The seed-format producer (tests/fixtures/seed_producer.py) and the bench's
# Python peer (bench/peers/seed_worker.py) need greenstalk.
venv="$root/target/seed-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import greenstalk' 2>/dev/null; then
    if ! command -v python3 >/dev/null; then apt_install python3 python3-venv; fi
    echo "setup: creating $venv with greenstalk" >&2
    # Debian's python3 can run `-m venv --help` without python3-venv, yet
    # cannot create a venv (no ensurepip): try, and install it if that fails.
    if ! python3 -m venv --clear "$venv" >/dev/null 2>&1; then
        apt_install python3-venv
        python3 -m venv --clear "$venv"
    fi
    "$venv/bin/pip" install -q greenstalk==2.1.1 >&2
fi

# componentize-py builds Python task components (tasks/hello-py/build.sh).
componentize_py_version=0.25.1
if [ "$("$venv/bin/componentize-py" --version 2>/dev/null)" != "componentize-py $componentize_py_version" ]; then
    echo "setup: installing componentize-py $componentize_py_version into $venv" >&2
    "$venv/bin/pip" install -q "componentize-py==$componentize_py_version" >&2
fi

# componentize-js builds JavaScript task components (tasks/hello-js/build.sh);
# the version is pinned in tasks/hello-js/package.json and package-lock.json.
componentize_js_version=0.23.0
hello_js="$root/tasks/hello-js"
if [ "$("$hello_js/node_modules/.bin/componentize-js" --version 2>/dev/null)" != "$componentize_js_version" ]; then
    if ! command -v npm >/dev/null; then apt_install nodejs npm; fi
    echo "setup: installing componentize-js $componentize_js_version into $hello_js/node_modules" >&2
    npm ci --prefix "$hello_js" --no-audit --no-fund >&2
fi
