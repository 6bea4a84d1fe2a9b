#!/usr/bin/env bash
# Installs what Reel's tests, demo and image builds need on a Debian 12 machine.
# Idempotent: installs only what is missing. Go programs (kind, Kubernetes, MinIO, helm) are built
# on demand by the targets that need them, into $REEL_CACHE (default ~/.cache/reel).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=(janus iproute2 iptables podman debootstrap catatonit uidmap fuse-overlayfs)
# kind test cluster (hack/kind): runc for podman (crun refuses the hybrid cgroup layout here)
apt_pkgs+=(runc)
# the Argo CD health check's tests (charts/reel/argocd/health.lua): Argo CD runs it in gopher-lua, Lua 5.1
apt_pkgs+=(lua5.1)
# a recording played by a real HLS player (tests/integration/test_hls_browser.py): hls.js in headless Chromium
apt_pkgs+=(chromium nodejs)
# ... and by FFmpeg's player, ffplay (tests/support/ffplay.py)
apt_pkgs+=(ffmpeg)
command -v npm >/dev/null 2>&1 || apt_pkgs+=(npm)  # Debian's nodejs comes without npm; NodeSource's has it
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: apt-get install ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[recorder,operator,dev]'

# hls.js for the browser test (tests/support/browser.py reads it from $REEL_CACHE/npm)
HLS_JS_VERSION=1.7.4
npm_dir="${REEL_CACHE:-$HOME/.cache/reel}/npm"
if [ "$(node -p "require('$npm_dir/node_modules/hls.js/package.json').version" 2>/dev/null)" != "$HLS_JS_VERSION" ]; then
  echo "deps: npm install hls.js@$HLS_JS_VERSION into $npm_dir"
  mkdir -p "$npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund --loglevel=error "hls.js@$HLS_JS_VERSION" >/dev/null
fi
