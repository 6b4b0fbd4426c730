#!/usr/bin/env bash
# Install videonet on a fresh Debian/Ubuntu machine (run as root or with sudo available):
# - apt: WordNet 3.0; ffmpeg (yt-dlp's download ranges, --judge-prefix); chromium + chromium-driver (the
#   report page's browser test); Java + Maven (Flink);
# - pip: the package with its demo/test extras; Deno and yt-dlp's default extra (YouTube's JS challenges);
# - Beam's Flink job server (mvn) and Flink's jars (pip --no-deps) into ~/.cache/videonet/flink.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq wordnet-base wordnet-sense-index chromium chromium-driver \
    openjdk-17-jre-headless maven ffmpeg >/dev/null
python3 -m pip install -q -e '.[test]'
# yt-dlp's JavaScript runtime (Deno, from PyPI: the binary in a wheel) and its challenge-solver scripts
# (the default extra): without them YouTube serves yt-dlp only a few formats, and `--source youtube`
# refuses to start.
python3 -m pip install -q deno 'yt-dlp[default]'
python3 -m videonet.flink install
echo "videonet installed: $(command -v videonet)"
