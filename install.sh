#!/usr/bin/env bash
# Install videonet on a fresh Debian/Ubuntu machine: WordNet 3.0 and chromium + chromium-driver (apt;
# the browser runs the report's page test), and the package with its demo/test extras (pip). Run as
# root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq wordnet-base wordnet-sense-index chromium chromium-driver >/dev/null
python3 -m pip install -q -e '.[test]'
echo "videonet installed: $(command -v videonet)"
