#!/bin/sh
# claudemesh installer: downloads a release for this machine, checks its
# SHA-256 against the release's SHA256SUMS, and installs `claudemesh` and
# `claudemesh-broker` into ~/.local/bin (no root needed).
#
#   curl -fsSL https://claudemesh.dev/install.sh | sh
#   sh install.sh [--version X.Y.Z] [--prefix DIR] [--uninstall]
#
# Environment:
#   CLAUDEMESH_INSTALL_BASE  where releases live (default below); a mirror or
#                            a local folder served over HTTP works the same:
#                            <base>/<version>/SHA256SUMS and
#                            <base>/<version>/claudemesh-<version>-<os>-<arch>.tar.gz,
#                            <base>/LATEST names the newest version.
#   CLAUDEMESH_VERSION       same as --version.
#
# Exit codes: 0 done; 1 download, checksum or install failure; 2 bad
# arguments; 3 platform not supported.
set -eu

base=${CLAUDEMESH_INSTALL_BASE:-https://claudemesh.dev/releases}
version=${CLAUDEMESH_VERSION:-}
prefix="${HOME:-}/.local"
uninstall=0
bins="claudemesh claudemesh-broker"

say() { printf '%s\n' "$*"; }
fail() { printf 'claudemesh install: %s\n' "$*" >&2; exit "${2:-1}"; }

usage() {
    say "usage: install.sh [--version X.Y.Z] [--prefix DIR] [--uninstall]"
    say "  --version   install this release (default: the latest)"
    say "  --prefix    install into DIR/bin (default: ~/.local)"
    say "  --uninstall remove what this script installed from DIR/bin"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --version) [ $# -ge 2 ] || fail "--version needs a value" 2; version=$2; shift 2 ;;
        --version=*) version=${1#--version=}; shift ;;
        --prefix) [ $# -ge 2 ] || fail "--prefix needs a directory" 2; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#--prefix=}; shift ;;
        --uninstall) uninstall=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; fail "unknown argument: $1" 2 ;;
    esac
done
[ -n "$prefix" ] || fail "no install prefix: HOME is not set; pass --prefix DIR" 2
bindir="$prefix/bin"

if [ "$uninstall" = 1 ]; then
    removed=0
    for b in $bins; do
        if [ -f "$bindir/$b" ]; then
            rm -f "$bindir/$b"
            say "removed $bindir/$b"
            removed=1
        fi
    done
    [ "$removed" = 1 ] || say "nothing to remove in $bindir"
    say "your meshes and keys in ~/.claudemesh were left alone (delete that folder to forget them)"
    exit 0
fi

os=$(uname -s 2>/dev/null || echo unknown)
arch=$(uname -m 2>/dev/null || echo unknown)
case "$os" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    *) fail "no release for the operating system '$os' (there are builds for Linux and macOS). Build from source instead: cargo install --git <repository> claudemesh" 3 ;;
esac
case "$arch" in
    x86_64|amd64) arch=x86_64 ;;
    aarch64|arm64) arch=aarch64 ;;
    *) fail "no release for the CPU '$arch' (there are builds for x86_64 and aarch64). Build from source instead: cargo install --git <repository> claudemesh" 3 ;;
esac

if command -v curl >/dev/null 2>&1; then
    fetch() { curl -fsSL --retry 2 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
    fetch() { wget -q -O "$2" "$1"; }
else
    fail "neither curl nor wget is installed; install one and run this again"
fi
if command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
    fail "cannot check the download: neither sha256sum nor shasum is installed"
fi

tmp=$(mktemp -d 2>/dev/null || mktemp -d -t claudemesh)
trap 'rm -rf "$tmp"' EXIT INT TERM

if [ -z "$version" ]; then
    fetch "$base/LATEST" "$tmp/LATEST" || fail "cannot reach $base/LATEST (offline? set CLAUDEMESH_INSTALL_BASE for a mirror)"
    version=$(tr -d ' \r\n' < "$tmp/LATEST")
fi
version=${version#v}
case "$version" in
    ''|*[!0-9A-Za-z.+-]*) fail "not a version: '$version'" 2 ;;
esac

archive="claudemesh-$version-$os-$arch.tar.gz"
say "claudemesh $version for $os/$arch"
fetch "$base/$version/SHA256SUMS" "$tmp/SHA256SUMS" \
    || fail "cannot download $base/$version/SHA256SUMS (is $version a release?)"
fetch "$base/$version/$archive" "$tmp/$archive" \
    || fail "cannot download $base/$version/$archive"

want=$(awk -v f="$archive" '$2 == f || $2 == "*" f { print $1 }' "$tmp/SHA256SUMS")
[ -n "$want" ] || fail "SHA256SUMS has no line for $archive; refusing to install"
got=$(sha256 "$tmp/$archive")
if [ "$got" != "$want" ]; then
    fail "checksum mismatch for $archive (expected $want, got $got): the download is corrupt or was tampered with; nothing was installed"
fi
say "checksum ok ($want)"

mkdir -p "$tmp/x"
tar -xzf "$tmp/$archive" -C "$tmp/x" || fail "cannot unpack $archive"
for b in $bins; do
    [ -f "$tmp/x/$b" ] || fail "$archive does not contain $b; nothing was installed"
done
mkdir -p "$bindir" || fail "cannot create $bindir"
# Copy beside the target, then rename: a running claudemesh keeps its old
# file and nobody ever sees a half-written binary.
for b in $bins; do
    cp "$tmp/x/$b" "$bindir/.$b.new" && chmod 755 "$bindir/.$b.new" \
        || fail "cannot write to $bindir"
done
for b in $bins; do
    mv -f "$bindir/.$b.new" "$bindir/$b" || fail "cannot install $bindir/$b"
done
say "installed $bindir/claudemesh and $bindir/claudemesh-broker"

case ":${PATH:-}:" in
    *":$bindir:"*) ;;
    *) say "note: $bindir is not on your PATH; add it, e.g.: export PATH=\"$bindir:\$PATH\"" ;;
esac
say ""
say "next: join a mesh with the invite link you were given:"
say "  claudemesh join <invite-url>"
say "or try it locally first:  claudemesh demo"
