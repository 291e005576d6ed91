#!/bin/sh
# The console tests drive a real headless Chromium (tests/admin/test_console.py). Browsers cannot
# be downloaded by Playwright here, so Debian's chromium package is used; installed once.
set -eu
if command -v chromium >/dev/null 2>&1 || [ -n "${GATEWAY_TEST_CHROMIUM:-}" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  exit 0
fi
echo "the console tests need Chromium: run 'sudo apt-get install chromium' (or set GATEWAY_TEST_CHROMIUM to a chromium binary)" >&2
exit 1
