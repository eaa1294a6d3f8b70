#!/usr/bin/env bash
# Packaging test: installs libwsclient into a scratch prefix with scripts/package.sh, then
# builds and runs programs against the installed copy only, the way a user of the library
# would (pkg-config, CMake find_package, static linking).
#
#   scripts/package-test.sh
#
# Steps (each one line "ok NAME" or "FAIL NAME (log: ...)"):
#   install          scripts/package.sh PREFIX succeeds (installs cargo-c first if missing)
#   soname           libwsclient.so.X.Y.Z has soname libwsclient.so.X; the .so.X and .so links
#   pc-file          wsclient.pc: version, --cflags, --libs; the installed header is include/wsclient.h
#   cmake-config     find_package(wsclient) with compatible and incompatible versions
#   symbols          abi/check.sh on the installed library (abi/symbols.txt, header)
#   static-lib       libwsclient.a present; examples linked statically (pkg-config and CMake) run
#   pkg-config-build examples/c/Makefile (pkg-config, -Wall -Wextra -Werror); echo_client runs
#   cmake-build      examples/c/CMakeLists.txt (find_package, wsclient::wsclient); echo_client runs
#   wscat            two lines piped to wscat come back in order; exit 0
#   wscat-proxy      the same through a real HTTP CONNECT proxy (tinyproxy) with Basic auth
#   chat             chat joins, sends a line, leaves; exit 0
#   telemetry        telemetry survives an echo server restart: reconnects, nothing dropped
#   destdir          package.sh PREFIX DESTDIR stages under DESTDIR; the staged CMake package is relocatable
# The last line is "packaging: N passed, N failed". Exits non-zero if a step failed.
#
# Everything goes to target/package-test/ (recreated on each run, kept afterwards for
# inspection): the prefix is target/package-test/work/prefix. The paths are fixed on purpose:
# cargo-c rebuilds the library from scratch whenever the install paths change, so a fixed
# prefix (and a separate cargo target directory for the DESTDIR step) keeps reruns fast.
# Concurrent runs on one checkout wait for each other.
#
# Needs: cargo, a C compiler, make, cmake (3.13+), pkg-config, readelf/nm/ldd, flock.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
unset LD_LIBRARY_PATH # every program must find the installed library by itself

target_dir=${CARGO_TARGET_DIR:-$root/target}
base=$target_dir/package-test
mkdir -p "$base"
exec 9>"$base/lock"
flock 9 # one run at a time: they share the prefix
work=$base/work
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
libdir=$prefix/lib
export PKG_CONFIG_PATH=$libdir/pkgconfig
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
major=${version%%.*}
echo_server=$target_dir/release/examples/echo_server

passed=0
failed=0
server_pid=
server_port=

stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true # its status is that of a killed process
        server_pid=
    fi
}
trap stop_server EXIT

# start_server PORT NAME: starts the echo server (PORT 0: any free port) with its output in
# $work/NAME.out/.err; sets server_pid and server_port. Fails if it does not report its port.
start_server() {
    local out=$work/$2.out line=
    "$echo_server" --port "$1" >"$out" 2>"$work/$2.err" &
    server_pid=$!
    for _ in $(seq 100); do
        [ -f "$out" ] && { IFS= read -r line <"$out" || true; }
        [ -n "$line" ] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    server_port=${line##*:}
    if [[ $line != "listening on ws://"* || ! $server_port =~ ^[0-9]+$ ]]; then
        echo "echo server did not start (got: '$line'; stderr: $(cat "$work/$2.err"))"
        server_pid=
        return 1
    fi
}

# step NAME FUNCTION: runs FUNCTION in a subshell under `set -e` with its output in
# $work/NAME.log, and counts it as passed or failed.
step() {
    local name=$1 log=$work/$1.log
    shift
    (
        set -e
        "$@"
    ) >"$log" 2>&1
    local rc=$?
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name (exit $rc; log: $log)"
        tail -n 30 "$log" | sed 's/^/    /'
    fi
}

# needed_libs BINARY: the DT_NEEDED entries of BINARY.
needed_libs() {
    readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
}

# uses_installed_library BINARY: BINARY needs libwsclient.so.MAJOR and finds it in the prefix
# (through its rpath/runpath; LD_LIBRARY_PATH is unset).
uses_installed_library() {
    local needed resolved
    needed=$(needed_libs "$1")
    resolved=$(ldd "$1")
    echo "$resolved" | grep wsclient
    grep -x "libwsclient.so.$major" <<<"$needed" >/dev/null
    grep -F "libwsclient.so.$major => $libdir/libwsclient.so.$major " <<<"$resolved" >/dev/null
}

# run_echo_client BINARY: the client echoes against the shared server and exits 0.
run_echo_client() {
    echo "needs: $(needed_libs "$1" | tr '\n' ' ')"
    timeout 30 "$1" "ws://127.0.0.1:$server_port/"
}

# ---- the steps ------------------------------------------------------------------------------

install_step() {
    scripts/package.sh "$prefix"
    find "$prefix" | sort
}

soname() {
    local so=$libdir/libwsclient.so.$version
    [ -f "$so" ] && [ ! -L "$so" ]
    local name
    name=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    echo "soname of $so: $name"
    [ "$name" = "libwsclient.so.$major" ]
    echo "links: $(readlink "$libdir/libwsclient.so.$major"), $(readlink "$libdir/libwsclient.so")"
    [ "$(readlink "$libdir/libwsclient.so.$major")" = "libwsclient.so.$version" ]
    [ "$(readlink "$libdir/libwsclient.so")" = "libwsclient.so.$version" ]
}

pc_file() {
    cat "$libdir/pkgconfig/wsclient.pc"
    pkg-config --print-errors --exists "wsclient = $version"
    local cflags libs
    cflags=$(pkg-config --cflags wsclient)
    libs=$(pkg-config --libs wsclient)
    echo "cflags: $cflags"
    echo "libs: $libs"
    [[ " $cflags " == *" -I$prefix/include "* ]]
    [[ " $libs " == *" -L$libdir "* && " $libs " == *" -lwsclient "* ]]
    [ "$(pkg-config --variable=libdir wsclient)" = "$libdir" ]
    cmp include/wsclient.h "$prefix/include/wsclient.h"
}

# cmake_probe DIR PREFIX_PATH VERSION...: configures a project that calls
# find_package(wsclient VERSION...) and prints what it found.
cmake_probe() {
    local dir=$1 prefix_path=$2
    shift 2
    mkdir -p "$dir"
    cat >"$dir/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.13)
project(probe C)
find_package(wsclient $* QUIET)
if(NOT wsclient_FOUND)
  message(STATUS "probe: not found")
  return()
endif()
get_target_property(loc wsclient::wsclient IMPORTED_LOCATION)
get_target_property(inc wsclient::wsclient INTERFACE_INCLUDE_DIRECTORIES)
get_target_property(sloc wsclient::wsclient_static IMPORTED_LOCATION)
message(STATUS "probe: found \${wsclient_VERSION} in \${wsclient_DIR}")
message(STATUS "probe: location \${loc}")
message(STATUS "probe: include \${inc}")
message(STATUS "probe: static \${sloc}")
foreach(f "\${loc}" "\${inc}/wsclient.h" "\${sloc}")
  if(NOT EXISTS "\${f}")
    message(FATAL_ERROR "probe: missing \${f}")
  endif()
endforeach()
EOF
    rm -rf "$dir/build"
    cmake -S "$dir" -B "$dir/build" -DCMAKE_PREFIX_PATH="$prefix_path" >"$dir/cmake.log" 2>&1 || {
        cat "$dir/cmake.log"
        return 1
    }
    grep 'probe:' "$dir/cmake.log" | sed 's/^-- //'
}

cmake_config() {
    ls -l "$libdir/cmake/wsclient"
    local out
    for request in "" "$version EXACT" "$major.0" "$major.0...$((major + 1)).0"; do
        out=$(cmake_probe "$work/probe" "$prefix" $request)
        echo "find_package(wsclient $request): $out"
        grep -q "probe: found $version in $libdir/cmake/wsclient" <<<"$out"
        grep -q "probe: location $libdir/libwsclient.so.$version" <<<"$out"
    done
    for request in "$((major + 1)).0" "$version.1" "99"; do
        out=$(cmake_probe "$work/probe" "$prefix" $request)
        echo "find_package(wsclient $request): $out"
        grep -q "probe: not found" <<<"$out"
    done
}

symbols() {
    abi/check.sh "$libdir/libwsclient.so.$version"
}

static_lib() {
    local a=$libdir/libwsclient.a
    ls -l "$a"
    nm "$a" 2>/dev/null | grep -E ' T wsc_client_new$'
    # pkg-config: libwsclient.a plus Libs.private.
    make -C examples/c O="$work/static-pc" STATIC=1 "$work/static-pc/echo_client"
    # CMake: wsclient::wsclient_static.
    cmake -S examples/c -B "$work/static-cmake" -DCMAKE_PREFIX_PATH="$prefix" -DWSC_LINK_STATIC=ON
    cmake --build "$work/static-cmake" --target echo_client --verbose
    for bin in "$work/static-pc/echo_client" "$work/static-cmake/echo_client"; do
        if needed_libs "$bin" | grep -q wsclient; then
            echo "$bin is linked against the shared library"
            return 1
        fi
        run_echo_client "$bin"
    done
}

pkg_config_build() {
    make -C examples/c O="$work/pc-build"
    uses_installed_library "$work/pc-build/echo_client"
    run_echo_client "$work/pc-build/echo_client"
}

cmake_build() {
    cmake -S examples/c -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix"
    cmake --build "$work/cmake-build" --verbose
    uses_installed_library "$work/cmake-build/echo_client"
    run_echo_client "$work/cmake-build/echo_client"
}

wscat() {
    printf 'hello\nworld\n' | timeout 30 "$work/pc-build/wscat" "ws://127.0.0.1:$server_port/" >"$work/wscat.out"
    cat "$work/wscat.out"
    [ "$(cat "$work/wscat.out")" = "$(printf 'hello\nworld')" ]
}

# wscat --proxy through tinyproxy (foreground, Basic auth, loopback only).
wscat_proxy() {
    command -v tinyproxy >/dev/null || { echo "tinyproxy is not installed"; return 1; }
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf 'Port %s\nListen 127.0.0.1\nAllow 127.0.0.1\nBasicAuth wscat s3cret\nTimeout 30\n' "$port" >"$work/tinyproxy.conf"
    tinyproxy -d -c "$work/tinyproxy.conf" >"$work/tinyproxy.log" 2>&1 &
    local proxy_pid=$!
    local rc=0
    for _ in $(seq 50); do # wait until it listens
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    printf 'via\nproxy\n' | timeout 30 "$work/pc-build/wscat" --proxy "http://wscat:s3cret@127.0.0.1:$port" \
        "ws://127.0.0.1:$server_port/" >"$work/wscat-proxy.out" || rc=$?
    kill "$proxy_pid" 2>/dev/null
    wait "$proxy_pid" 2>/dev/null
    cat "$work/wscat-proxy.out"
    [ $rc -eq 0 ] && [ "$(cat "$work/wscat-proxy.out")" = "$(printf 'via\nproxy')" ] &&
        grep -q CONNECT "$work/tinyproxy.log"
}

chat() {
    printf 'hi there\n' | timeout 30 "$work/pc-build/chat" "ws://127.0.0.1:$server_port/" tester >"$work/chat.out"
    cat "$work/chat.out"
    grep -q '^\* connected as tester' "$work/chat.out"
    grep -q '^\* disconnected (code 1000: bye)' "$work/chat.out"
    if grep '^\* raw' "$work/chat.out"; then # the echoed join/msg/leave are our own
        return 1
    fi
}

# Runs telemetry for ~1 s, kills its server, restarts it on the same port 1 s later, and
# checks that telemetry reconnected and handed over every reading.
telemetry() {
    start_server 0 telemetry-server1
    local port=$server_port
    trap 'stop_server' EXIT
    timeout 60 "$work/pc-build/telemetry" --interval 100 --count 40 --backoff-min 100 --backoff-max 1000 \
        "ws://127.0.0.1:$port/" >"$work/telemetry.out" 2>"$work/telemetry.err" &
    local tpid=$!
    sleep 1
    stop_server
    echo "server killed"
    sleep 1
    for _ in 1 2 3 4 5; do # the port may need a moment to become free again
        start_server "$port" telemetry-server2 && break
        sleep 0.5
    done
    echo "server restarted on port $server_port"
    local rc=0
    wait "$tpid" || rc=$?
    cat "$work/telemetry.err" "$work/telemetry.out"
    echo "telemetry exit status $rc"
    [ $rc -eq 0 ]
    grep -Eq '^telemetry: 40 taken, 40 written, [0-9]+ resent after SEND_FAILED, 0 dropped, [1-9][0-9]* reconnects' "$work/telemetry.out"
}

destdir() {
    local stage=$work/stage fake_prefix=/opt/wsclient-package-test
    [ ! -e "$fake_prefix" ]
    # Its own cargo target directory: see the top of this file.
    CARGO_TARGET_DIR=$base/cargo-target-destdir scripts/package.sh "$fake_prefix" "$stage"
    [ ! -e "$fake_prefix" ] # nothing written outside DESTDIR
    [ -f "$stage$fake_prefix/lib/libwsclient.so.$version" ]
    [ -f "$stage$fake_prefix/include/wsclient.h" ]
    grep -qx "prefix=$fake_prefix" "$stage$fake_prefix/lib/pkgconfig/wsclient.pc"
    # The CMake files locate everything relative to themselves, so the staged tree works
    # where it is (and anywhere it is moved to).
    mv "$stage$fake_prefix" "$work/moved"
    local out
    out=$(cmake_probe "$work/probe-moved" "$work/moved" "$version")
    echo "$out"
    grep -q "probe: location $work/moved/lib/libwsclient.so.$version" <<<"$out"
}

# ---- run ------------------------------------------------------------------------------------

echo "packaging: testing libwsclient $version in $work"
step install install_step
step soname soname
step pc-file pc_file
step cmake-config cmake_config
step symbols symbols

if cargo build --release --example echo_server >"$work/echo-server-build.log" 2>&1 && start_server 0 echo-server; then
    echo "packaging: echo server on port $server_port"
else
    echo "packaging: cannot build or start the echo server (log: $work/echo-server-build.log)"
fi
step static-lib static_lib
step pkg-config-build pkg_config_build
step cmake-build cmake_build
step wscat wscat
step wscat-proxy wscat_proxy
step chat chat
stop_server
step telemetry telemetry
step destdir destdir

echo "packaging: logs in $work"
echo "packaging: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
