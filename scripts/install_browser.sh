#!/usr/bin/env bash
# Install Debian's Chromium for the JupyterLab browser test (tests/test_jupyterlab.py), once.
# Idempotent: does nothing when the browser is there. Never fails the caller: when it cannot
# install (not root, no apt-get, no network), it says why and the browser test skips with that
# reason (written to $NAIRSTD_BROWSER_LOG). NAIRSTD_NO_BROWSER_INSTALL=1 turns it off.
set -uo pipefail
browser="${NAIRSTD_CHROMIUM:-/usr/lib/chromium/chromium}"
log="${NAIRSTD_BROWSER_LOG:-/tmp/nairstd-browser-install.log}"
if [ -x "$browser" ]; then exit 0; fi
if [ "${NAIRSTD_NO_BROWSER_INSTALL:-0}" = "1" ]; then
  echo "install_browser: NAIRSTD_NO_BROWSER_INSTALL=1: not installing chromium" > "$log"
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: chromium missing and cannot install it here (needs root and apt-get)" | tee "$log" >&2
  exit 0
fi
echo "install_browser: installing Debian's chromium for the JupyterLab test (about a minute, once)"
if apt-get update -qq >"$log" 2>&1 &&
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >>"$log" 2>&1 </dev/null; then
  echo "install_browser: chromium installed: $("$browser" --version 2>/dev/null || echo '?')"
else
  echo "install_browser: apt-get install chromium failed (see $log); the browser test will skip" >&2
fi
exit 0
