#!/usr/bin/env bash
# Install videonet on a fresh Debian/Ubuntu machine (run as root or with sudo available):
# - apt: WordNet 3.0; ffmpeg (yt-dlp's download ranges, --judge-prefix); chromium + chromium-driver (the
#   report page's browser test); Java + Maven (Flink);
# - pip: the package with its demo/test extras (its dependencies bring Deno and yt-dlp's default extra, which
#   YouTube's JS challenges need);
# - Beam's Flink job server (mvn) and Flink's jars (pip --no-deps) into ~/.cache/videonet/flink.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq wordnet-base wordnet-sense-index chromium chromium-driver \
    openjdk-17-jre-headless maven ffmpeg >/dev/null
python3 -m pip install -q -e '.[test]'
python3 -m videonet.flink install
echo "videonet installed: $(command -v videonet)"
