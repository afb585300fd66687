#!/usr/bin/env bash
# Make sure the console test's browser is here: Debian's Chromium and a CJK font (the pages
# are in Chinese). Playwright's Python package comes with the venv (pyproject.toml); its
# own browser download cannot work here, so the tests drive /usr/bin/chromium.
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
font_present() {
  dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || fc-list 2>/dev/null | grep -qi "wqy\|WenQuanYi"
}

if [ -x "$CHROMIUM" ] && font_present; then
  echo "browser: $CHROMIUM with fonts-wqy-microhei"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: $CHROMIUM (Debian's chromium) and fonts-wqy-microhei are needed for the" \
       "console test; install them, or set CHROMIUM to a Chromium binary" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "error: installing chromium needs root (apt-get install chromium fonts-wqy-microhei)" >&2
    exit 1
  fi
fi
echo "installing chromium and fonts-wqy-microhei with apt-get ..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
test -x "$CHROMIUM" || { echo "error: $CHROMIUM is still missing after the install" >&2; exit 1; }
echo "browser: $CHROMIUM with fonts-wqy-microhei"
