#!/usr/bin/env bash
# Headless Chromium for the report test (tests/report): Debian's `chromium` package when it can be installed.
# Never fails the build: where Chromium cannot be installed the test skips and says why.
set -u
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_chromium: no apt-get here; the report rendering test will be skipped" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "setup_chromium: not root and no passwordless sudo; the report rendering test will be skipped" >&2
        exit 0
    fi
fi
echo "setup_chromium: installing Debian's chromium (headless browser for the report test)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends chromium >/tmp/setup_chromium.log 2>&1; then
    $SUDO apt-get update -q >>/tmp/setup_chromium.log 2>&1
    $SUDO apt-get install -y -q --no-install-recommends chromium >>/tmp/setup_chromium.log 2>&1 ||
        echo "setup_chromium: apt-get could not install chromium (see /tmp/setup_chromium.log); the report" \
             "rendering test will be skipped" >&2
fi
exit 0
