#!/usr/bin/env bash
# STAC Browser for sn9cloud's results: built once from npm, configured at run time by
# `sn9cloud browse` (which serves it with a catalog or points it at a STAC API).
#
#   deploy/stac-browser/stac-browser.sh install       # Debian's chromium, if missing (root)
#   deploy/stac-browser/stac-browser.sh build [OUT]   # OUT default: deploy/stac-browser/dist
#
# build needs npm and the npm registry; it installs the exact versions of
# package-lock.json here (`npm ci`) and skips the work when OUT already holds this version.
set -euo pipefail

VERSION=4.0.1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "stac-browser: $*" >&2; exit 2; }

install() {
  command -v chromium >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "chromium is missing; run as root: apt-get install -y chromium"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
}

build() {
  local out="${1:-$HERE/dist}"
  local stamp="stac-browser $VERSION $(sha256sum "$HERE/package-lock.json" | cut -c1-16)"
  if [ -f "$out/index.html" ] && [ "$(cat "$out/.sn9cloud-build" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  command -v npm >/dev/null || die "npm is missing (Node.js 18 or newer is needed to build)"
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  (cd "$work" && npm pack --silent "@radiantearth/stac-browser@$VERSION" >/dev/null) \
    || die "npm pack @radiantearth/stac-browser@$VERSION failed"
  tar xzf "$work"/radiantearth-stac-browser-*.tgz -C "$work"
  cd "$work/package"
  # without a lock ol-stac resolves to a release that imports names the pinned ol lacks
  npm pkg set dependencies.ol-stac=1.1.0
  cp "$HERE/package-lock.json" package-lock.json
  # configuration at run time: the page loads ./config.js, which `sn9cloud browse` writes
  grep -q '<!-- <script defer="defer" src="/config.js"></script> -->' public/index.html \
    || die "public/index.html of $VERSION no longer has the commented config.js tag"
  sed -i 's#<!-- <script defer="defer" src="/config.js"></script> -->#<script defer="defer" src="./config.js"></script>#' \
    public/index.html
  npm ci --no-audit --no-fund --loglevel=error >/dev/null || die "npm ci failed"
  SB_historyMode=hash SB_pathPrefix=./ npm run build >/dev/null 2>build.log \
    || { tail -20 build.log >&2; die "npm run build failed"; }
  rm -rf "$out.tmp" && cp -r dist "$out.tmp"
  echo "$stamp" > "$out.tmp/.sn9cloud-build"
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "stac-browser: built $VERSION in $out"
}

case "${1:-}" in
  install) install ;;
  build) shift; build "$@" ;;
  *) die "usage: $0 install | build [OUT]" ;;
esac
