#!/usr/bin/env bash
# Builds a release: for each target, `claudemesh` and `claudemesh-broker` in
# release mode, packed as dist/<version>/claudemesh-<version>-<os>-<arch>.tar.gz,
# then dist/<version>/SHA256SUMS (what install.sh checks), dist/LATEST and a
# copy of install.sh. Serve dist/ as CLAUDEMESH_INSTALL_BASE.
#
#   scripts/release.sh                      the host's target
#   scripts/release.sh --target aarch64-unknown-linux-gnu ...   (toolchains must be installed)
#   scripts/release.sh --bin-dir target/debug --out DIR   pack already built binaries (tests)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
out="$repo/dist"
bin_dir=""
targets=()
fail() { printf 'release: %s\n' "$*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --target) targets+=("$2"); shift 2 ;;
        --bin-dir) bin_dir=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) fail "unknown argument: $1" ;;
    esac
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || fail "cannot read the workspace version from Cargo.toml"

# os-arch names install.sh asks for, from a Rust target triple.
platform() {
    local arch=${1%%-*} os
    case "$1" in
        *-linux-*) os=linux ;;
        *-apple-darwin) os=darwin ;;
        *) fail "no install.sh platform for target $1" ;;
    esac
    case "$arch" in x86_64|aarch64) ;; *) fail "no install.sh architecture for $1" ;; esac
    printf '%s-%s' "$os" "$arch"
}

host=$(rustc -vV | sed -n 's/^host: //p')
[ ${#targets[@]} -gt 0 ] || targets=("$host")
mkdir -p "$out/$version"
for t in "${targets[@]}"; do
    dir=$bin_dir
    if [ -z "$dir" ]; then
        cargo build --locked --release --target "$t" -p claudemesh -p claudemesh-broker
        dir="${CARGO_TARGET_DIR:-target}/$t/release"
    fi
    name="claudemesh-$version-$(platform "$t").tar.gz"
    stage=$(mktemp -d)
    cp "$dir/claudemesh" "$dir/claudemesh-broker" "$stage/"
    strip "$stage/claudemesh" "$stage/claudemesh-broker" 2>/dev/null || true
    tar -czf "$out/$version/$name" -C "$stage" claudemesh claudemesh-broker
    rm -rf "$stage"
    printf 'packed %s\n' "$out/$version/$name"
done
(cd "$out/$version" && sha256sum claudemesh-*.tar.gz > SHA256SUMS)
printf '%s\n' "$version" > "$out/LATEST"
cp install.sh "$out/install.sh"
printf 'wrote %s/SHA256SUMS and %s/LATEST\n' "$out/$version" "$out"
