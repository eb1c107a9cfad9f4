#!/usr/bin/env bash
# Fetch Debian's linux-source-7.3 through a private apt state (the system's
# apt sources are left alone) and unpack it into a git tree in the cache whose
# first commit is the pristine source. Prints nothing new when already there.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PKG=linux-source-7.3
APT="$CACHE/apt"
DL="$CACHE/dl"
TREE="$CACHE/linux"

if [ -f "$TREE/.pristine-version" ] && git -C "$TREE" rev-parse -q --verify refs/tags/pristine >/dev/null; then
	log "kernel source: $(cat "$TREE/.pristine-version") (cached)"
	exit 0
fi

mkdir -p "$APT"/{lists/partial,sources,cache/archives/partial} "$DL"
mirror=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null |
	grep -v security | head -n1)
mirror=${mirror:-http://deb.debian.org/debian}
cat > "$APT/sources/backports.sources" <<SRC
Types: deb
URIs: $mirror
Suites: trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
aptopts=(-o Dir::State::Lists="$APT/lists" -o Dir::Etc::SourceList=/dev/null
	 -o Dir::Etc::SourceParts="$APT/sources" -o Dir::Cache="$APT/cache"
	 -o Dir::State::status=/var/lib/dpkg/status -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root)

deb=$(ls "$DL"/${PKG}_*.deb 2>/dev/null | tail -n1 || true)
if [ -z "$deb" ]; then
	log "apt: resolving $PKG in trixie-backports"
	apt-get "${aptopts[@]}" update -qq
	(cd "$DL" && apt-get "${aptopts[@]}" download "$PKG")
	deb=$(ls "$DL"/${PKG}_*.deb | tail -n1)
fi
version=$(dpkg-deb -f "$deb" Version)
log "kernel source: $PKG $version"

rm -rf "$TREE" "$CACHE/unpack"
mkdir -p "$CACHE/unpack"
dpkg -x "$deb" "$CACHE/unpack"
tar -C "$CACHE/unpack" -xf "$CACHE/unpack/usr/src/$PKG.tar.xz"
mv "$CACHE/unpack/$PKG" "$TREE"
rm -rf "$CACHE/unpack"

cd "$TREE"
git init -q -b series
git config user.name "dma-buf memory project"
git config user.email "dmabuf-memory@localhost"
git config core.autocrlf false
git add -A -f .
git commit -q -m "Linux $(make -s kernelversion) from Debian $PKG $version"
git tag pristine
echo "$PKG $version" > .pristine-version
echo .pristine-version >> .git/info/exclude
log "kernel source: pristine tree at $TREE"
