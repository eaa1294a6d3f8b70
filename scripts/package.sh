#!/usr/bin/env bash
# Installs libwsclient like a system library:
#
#   scripts/package.sh PREFIX [DESTDIR]
#
# PREFIX   where the library will live at run time, an absolute path (e.g. /usr/local).
# DESTDIR  optional staging root (for distribution packages): files are written to
#          DESTDIR/PREFIX/..., while the pkg-config file and the library still name PREFIX.
#
# Installs, under PREFIX:
#   LIBDIR/libwsclient.so.X.Y.Z        the shared library, soname libwsclient.so.X
#   LIBDIR/libwsclient.so.X            -> libwsclient.so.X.Y.Z
#   LIBDIR/libwsclient.so              -> libwsclient.so.X.Y.Z   (for -lwsclient)
#   LIBDIR/libwsclient.a               the static library
#   LIBDIR/pkgconfig/wsclient.pc       pkg-config: `pkg-config --cflags --libs wsclient`
#   LIBDIR/cmake/wsclient/wsclientConfig.cmake, wsclientConfigVersion.cmake
#                                      CMake: find_package(wsclient) -> wsclient::wsclient
#   include/wsclient.h                 the checked-in header (include/wsclient.h)
# (macOS: libwsclient.X.Y.Z.dylib and libwsclient.X.dylib instead of the .so files.)
#
# The library, the header and the pkg-config file are installed by cargo-c
# (`cargo cinstall`), which is installed first if `cargo-cinstall` is not on the PATH (about
# 10 minutes on 2 cores). cargo-c does not write CMake files, so this script generates them
# from packaging/cmake/*.cmake.in.
#
# Environment:
#   LIBDIR=lib             library directory, relative to PREFIX (e.g. lib64,
#                          lib/x86_64-linux-gnu); cargo-c's own default on Debian would be
#                          the multiarch directory, so it is always passed explicitly
#   CARGO_C_VERSION=...    the cargo-c to install when missing
#   CARGO_TARGET_DIR       honoured as usual (default: target/)
set -euo pipefail

usage() {
    echo "usage: scripts/package.sh PREFIX [DESTDIR]" >&2
    exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
prefix=$1
destdir=${2:-}
libdir=${LIBDIR:-lib}
case $prefix in /*) ;; *) echo "package: PREFIX must be an absolute path: $prefix" >&2; exit 2 ;; esac
case $destdir in /* | "") ;; *) echo "package: DESTDIR must be an absolute path: $destdir" >&2; exit 2 ;; esac
case $libdir in /* | *..*) echo "package: LIBDIR must be relative to PREFIX: $libdir" >&2; exit 2 ;; esac
prefix=${prefix%/}
destdir=${destdir%/}
libdir=${libdir%/}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# cargo-c 0.10.24 is the newest release that builds with rustc 1.95 (later ones need 1.97);
# --locked keeps its dependencies at versions that build with it too.
cargo_c_version=${CARGO_C_VERSION:-0.10.24+cargo-0.98.0}
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
if ! command -v cargo-cinstall >/dev/null 2>&1; then
    if [ -x "$cargo_bin/cargo-cinstall" ]; then
        PATH=$cargo_bin:$PATH
    else
        echo "package: cargo-cinstall not found; installing cargo-c $cargo_c_version (takes a while)"
        cargo install --locked "cargo-c@$cargo_c_version"
        PATH=$cargo_bin:$PATH
    fi
fi

# 1. Library, header and pkg-config file (cargo-c; settings in Cargo.toml [package.metadata.capi]).
args=(--release --prefix="$prefix" --libdir="$libdir")
[ -n "$destdir" ] && args+=(--destdir="$destdir")
cargo cinstall "${args[@]}"

# 2. CMake package files, generated from the templates with this install's paths.
stage=$destdir$prefix
pc=$stage/$libdir/pkgconfig/wsclient.pc
[ -f "$pc" ] || { echo "package: cargo cinstall did not write $pc" >&2; exit 1; }
version=$(sed -n 's/^Version: *//p' "$pc")
# The soname carries the major version (Cargo.toml: version_suffix_components = 1).
soversion=${version%%.*}
# Libs.private: what a static link needs besides libwsclient.a, as a CMake list.
static_deps=$(sed -n 's/^Libs.private: *//p' "$pc" | xargs | tr ' ' ';')
pointer_width=$(rustc --print cfg | sed -n 's/^target_pointer_width="\([0-9]*\)"$/\1/p')
sizeof_void_p=$((pointer_width / 8))

cmakedir=$libdir/cmake/wsclient
# From the CMake directory back up to PREFIX: one ".." per path component.
up=$(echo "$cmakedir" | tr '/' '\n' | sed 's/.*/../' | paste -sd/ -)

mkdir -p "$stage/$cmakedir"
for name in wsclientConfig wsclientConfigVersion; do
    sed -e "s|@WSC_VERSION@|$version|g" \
        -e "s|@WSC_SOVERSION@|$soversion|g" \
        -e "s|@WSC_CMAKEDIR_TO_PREFIX@|$up|g" \
        -e "s|@WSC_LIBDIR@|$libdir|g" \
        -e "s|@WSC_BINDIR@|bin|g" \
        -e "s|@WSC_INCLUDEDIR@|include|g" \
        -e "s|@WSC_STATIC_DEPS@|$static_deps|g" \
        -e "s|@WSC_SIZEOF_VOID_P@|$sizeof_void_p|g" \
        "packaging/cmake/$name.cmake.in" >"$stage/$cmakedir/$name.cmake"
    if grep -q '@WSC_[A-Z_]*@' "$stage/$cmakedir/$name.cmake"; then
        echo "package: unreplaced placeholder in $name.cmake" >&2
        exit 1
    fi
done
echo "package: installed libwsclient $version under ${destdir:+$destdir}$prefix"
