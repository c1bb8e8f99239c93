#!/usr/bin/env bash
# Ecosystem tests: scripts/install, the pkg-config and CMake packages, the SONAME, the C and C++
# examples (shared and static) and the C++ wrapper's tests, all against an installed copy in a
# temporary prefix and the bundled fake Globus Auth.
#
#   tests/ecosystem/run.sh
#
# Needs the release build: cargo build --release -p tokenchecker -p fake-globus
# Environment: TARGET_DIR (cargo's target directory, default ./target), KEEP=1 (keep the
# temporary directory), CC / CXX. Needs cc, c++, cmake >= 3.14, pkg-config, readelf.
# Prints "ok"/"not ok" per test, the log of each failure, and "N passed, M failed"; exits 1
# when a test failed.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$root/$TARGET_DIR ;; esac
rel=$TARGET_DIR/release
CC=${CC:-cc}
CXX=${CXX:-c++}
export CC CXX

for f in "$rel/libtokenchecker.so" "$rel/libtokenchecker.a" "$rel/fake-globus"; do
  [ -e "$f" ] || { echo "missing $f: run cargo build --release -p tokenchecker -p fake-globus" >&2; exit 2; }
done
for tool in "$CC" "$CXX" cmake pkg-config readelf; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing $tool (scripts/setup installs it)" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/tc-ecosystem.XXXXXX")
fake_pid=
cleanup() {
  if [ -n "$fake_pid" ]; then kill "$fake_pid" 2>/dev/null; wait "$fake_pid" 2>/dev/null; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "# kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- versions, from Cargo.toml and the header ----------------------------------------------
header=$root/include/tokenchecker.h
macro() { sed -n "s/^#define $1 \"\{0,1\}\([^\" ]*\)\"\{0,1\}[[:space:]]*$/\1/p" "$header"; }
VERSION=$(macro TOKENCHECKER_VERSION)
MAJOR=$(macro TOKENCHECKER_VERSION_MAJOR)
MINOR=$(macro TOKENCHECKER_VERSION_MINOR)
ABI=$(macro TOKENCHECKER_ABI_VERSION)
SONAME=libtokenchecker.so.$MAJOR
CARGO_VERSION=$(awk '/^\[/ { p = ($0 == "[package]"); next } p && /^version[ \t]*=/ { gsub(/^[^"]*"|".*$/, ""); print; exit }' "$root/Cargo.toml")

# ---- the fake Globus Auth ---------------------------------------------------------------------
"$rel/fake-globus" >"$work/fake.out" 2>"$work/fake.err" &
fake_pid=$!
URL=
for _ in $(seq 1 100); do
  line=$(head -n 1 "$work/fake.out" 2>/dev/null)
  case $line in FAKE_GLOBUS_URL=*) URL=${line#FAKE_GLOBUS_URL=}; break ;; esac
  kill -0 "$fake_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$URL" ] || { echo "fake-globus did not start:" >&2; cat "$work/fake.err" >&2; exit 2; }
export FAKE_GLOBUS_URL=$URL
CONFIG="{\"client_id\":\"test-client\",\"client_secret\":\"test-secret\",\"expected_scopes\":[\"urn:globus:auth:scope:test:all\"],\"auth_url\":\"$URL\",\"groups_url\":\"$URL\"}"
printf '%s\n' "$CONFIG" >"$work/config.json"

# ---- harness ------------------------------------------------------------------------------------
passed=0
failed=0
n=0
# t NAME FUNCTION [ARGS...]: runs the function with its output in a log; shows the log on failure.
t() {
  local name=$1 log
  shift
  n=$((n + 1))
  log=$work/logs/$(printf '%02d' "$n").log
  mkdir -p "$work/logs"
  # A plain command (not in an `if`, `||` or `&&`), so that errexit stays on inside the subshell.
  ( set -e; "$@" ) >"$log" 2>&1
  local rc=$?
  if [ "$rc" = 0 ]; then
    passed=$((passed + 1))
    echo "ok $n - $name"
  else
    failed=$((failed + 1))
    echo "not ok $n - $name"
    tail -n 60 "$log" | sed 's/^/#   /'
  fi
}
fail() { echo "FAIL: $*"; return 1; }
expect_grep() { # PATTERN FILE
  grep -Eq -- "$1" "$2" || { echo "expected /$1/ in $2:"; cat "$2"; return 1; }
}
soname_of() { readelf -d "$1" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p'; }
needed_of() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'; }

P=$work/prefix          # the main installation
L=$P/lib
export PKG_CONFIG_PATH=$L/pkgconfig
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR

# Runs a built check program (C or C++ example) against the fake: valid, inactive, a blank line,
# wrong scope; then only a valid token (exit 0); then the configuration from TC_CONFIG.
run_example() { # PROGRAM
  local prog=$1 out=$work/out.$$.$RANDOM rc
  rc=0
  printf 'tok-valid\ntok-inactive\n\n tok-wrong-scope\r\n' | "$prog" "$work/config.json" >"$out" || rc=$?
  cat "$out"
  [ "$rc" = 1 ] || fail "exit status $rc with an invalid token, expected 1"
  expect_grep '^1 TC_OK \{"active":true,.*"effective_identity":"urn:globus:auth:identity:a11ce000-0000-4000-8000-000000000001"' "$out"
  expect_grep '^2 TC_INACTIVE_TOKEN \{"error":\{"code":"TC_INACTIVE_TOKEN"' "$out"
  expect_grep '^4 TC_INSUFFICIENT_SCOPE ' "$out"
  [ "$(wc -l <"$out")" = 3 ] || fail "expected 3 lines (the blank line is skipped)"
  ! grep -q 'tok-' "$out" || fail "a token was printed"
  printf 'tok-bob\n' | TC_CONFIG=$CONFIG "$prog" >"$out" || fail "exit status $? with a valid token (TC_CONFIG), expected 0"
  expect_grep '^1 TC_OK .*"username":"bob@example.org"' "$out"
  rc=0
  "$prog" "$work/no-such-config.json" </dev/null || rc=$?
  [ "$rc" = 2 ] || fail "a missing config file: exit status $rc, expected 2"
  rm -f "$out"
}

# ---- tests -------------------------------------------------------------------------------------

test_install_usage() {
  "$root/scripts/install" --help >"$work/usage.out"
  grep -q '^Usage: scripts/install' "$work/usage.out"
  if "$root/scripts/install" --no-build --bogus 2>"$work/usage.err"; then fail "--bogus accepted"; fi
  grep -q "unknown argument '--bogus'" "$work/usage.err"
  if PREFIX=relative "$root/scripts/install" --no-build 2>"$work/usage.err"; then fail "relative PREFIX accepted"; fi
  grep -q 'must be an absolute path' "$work/usage.err"
  # --dry-run writes nothing.
  "$root/scripts/install" --no-build --dry-run --prefix "$work/dry" --target-dir "$TARGET_DIR"
  [ ! -e "$work/dry" ] || fail "--dry-run created $work/dry"
}

test_install_prefix() {
  "$root/scripts/install" --no-build --prefix "$P" --target-dir "$TARGET_DIR"
  [ -f "$L/libtokenchecker.so.$VERSION" ] || fail "no libtokenchecker.so.$VERSION"
  [ ! -L "$L/libtokenchecker.so.$VERSION" ] || fail "libtokenchecker.so.$VERSION is a link"
  [ "$(readlink "$L/$SONAME")" = "libtokenchecker.so.$VERSION" ] || fail "$SONAME -> $(readlink "$L/$SONAME")"
  [ "$(readlink "$L/libtokenchecker.so")" = "$SONAME" ] || fail "libtokenchecker.so -> $(readlink "$L/libtokenchecker.so")"
  [ -f "$L/libtokenchecker.a" ] || fail "libtokenchecker.a"
  cmp -s "$L/libtokenchecker.so.$VERSION" "$rel/libtokenchecker.so" || fail "installed .so differs from the build"
  cmp -s "$P/include/tokenchecker.h" "$root/include/tokenchecker.h" || fail "tokenchecker.h"
  cmp -s "$P/include/tokenchecker.hpp" "$root/include/tokenchecker.hpp" || fail "tokenchecker.hpp"
  for f in pkgconfig/tokenchecker.pc pkgconfig/tokenchecker-static.pc \
           cmake/tokenchecker/tokenchecker-config.cmake cmake/tokenchecker/tokenchecker-config-version.cmake; do
    [ -f "$L/$f" ] || fail "missing $L/$f"
    ! grep -n '@[A-Z_]*@' "$L/$f" || fail "placeholder left in $f"
  done
  expect_grep "^prefix=$P\$" "$L/pkgconfig/tokenchecker.pc"
  expect_grep '^libdir=\$\{prefix\}/lib$' "$L/pkgconfig/tokenchecker.pc"
  expect_grep '^Libs: -L\$\{libdir\} -ltokenchecker$' "$L/pkgconfig/tokenchecker.pc"
  expect_grep '^Libs.private: .*-lpthread' "$L/pkgconfig/tokenchecker.pc"
  # Installing again over it works (replaces the library, keeps the links right).
  "$root/scripts/install" --no-build --prefix "$P" --target-dir "$TARGET_DIR" >/dev/null
  [ "$(readlink "$L/$SONAME")" = "libtokenchecker.so.$VERSION" ] || fail "reinstall broke $SONAME"
}

test_soname() {
  local built installed
  built=$(soname_of "$rel/libtokenchecker.so")
  installed=$(soname_of "$L/libtokenchecker.so.$VERSION")
  echo "build: $built, installed: $installed"
  [ "$built" = "$SONAME" ] || fail "target/release/libtokenchecker.so has SONAME '$built', expected $SONAME (build.rs)"
  [ "$installed" = "$SONAME" ] || fail "installed SONAME '$installed', expected $SONAME"
}

test_versions() {
  echo "Cargo.toml $CARGO_VERSION, header $VERSION ($MAJOR.$MINOR, ABI $ABI)"
  [ "$CARGO_VERSION" = "$VERSION" ] || fail "Cargo.toml version $CARGO_VERSION != header $VERSION"
  [ "$(pkg-config --modversion tokenchecker)" = "$VERSION" ] || fail "pkg-config --modversion"
  [ "$(pkg-config --modversion tokenchecker-static)" = "$VERSION" ] || fail "pkg-config --modversion (static)"
  [ "$(pkg-config --variable=abi_version tokenchecker)" = "$ABI" ] || fail "abi_version variable"
  [ "$(pkg-config --variable=soname tokenchecker)" = "$SONAME" ] || fail "soname variable"
  pkg-config --atleast-version="$VERSION" tokenchecker || fail "--atleast-version"
  [ -f "$L/libtokenchecker.so.$VERSION" ] || fail "library file name does not carry $VERSION"
  # The library loaded at run time reports the same version and ABI (a 5-line program).
  cat >"$work/ver.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <tokenchecker.h>
int main(void) {
    printf("%s %u\n", tc_version(), (unsigned)tc_abi_version());
    return strcmp(tc_version(), TOKENCHECKER_VERSION) != 0 || tc_abi_version() != TOKENCHECKER_ABI_VERSION;
}
EOF
  # shellcheck disable=SC2046
  "$CC" -o "$work/ver" "$work/ver.c" $(pkg-config --cflags --libs tokenchecker) -Wl,-rpath,"$L"
  [ "$("$work/ver")" = "$VERSION $ABI" ] || fail "tc_version/tc_abi_version: $("$work/ver")"
}

test_c_shared() {
  local exe=$work/check-c-shared
  # shellcheck disable=SC2046
  "$CC" -std=c11 -Wall -Wextra -Werror -pedantic -O2 -o "$exe" "$root/examples/c/check.c" \
    $(pkg-config --cflags --libs tokenchecker) -Wl,-rpath,"$L"
  needed_of "$exe" | grep -x "$SONAME" >/dev/null || fail "NEEDED lacks $SONAME: $(needed_of "$exe" | tr '\n' ' ')"
  ldd "$exe" | grep "$SONAME => $L/$SONAME" >/dev/null || { ldd "$exe"; fail "does not load the installed library"; }
  run_example "$exe"
}

test_c_static() {
  local exe=$work/check-c-static
  pkg-config --static --libs tokenchecker | grep -- '-ltokenchecker .*-lpthread' >/dev/null || fail "pkg-config --static"
  # shellcheck disable=SC2046
  "$CC" -std=c11 -Wall -Wextra -Werror -pedantic -O2 -o "$exe" "$root/examples/c/check.c" \
    $(pkg-config --cflags --libs tokenchecker-static)
  ! needed_of "$exe" | grep tokenchecker >/dev/null || fail "linked dynamically: $(needed_of "$exe" | tr '\n' ' ')"
  nm "$exe" | grep ' T tc_check$' >/dev/null || fail "tc_check is not in the program"
  run_example "$exe"
}

test_destdir() {
  local D=$work/dest Pd=/opt/tokenchecker-ecosystem-test
  DESTDIR=$D PREFIX=$Pd LIBDIR=$Pd/lib64 TARGET_DIR=$TARGET_DIR "$root/scripts/install" --no-build --strip
  [ ! -e "$Pd" ] || fail "wrote outside DESTDIR: $Pd exists"
  [ -f "$D$Pd/lib64/libtokenchecker.so.$VERSION" ] || fail "library not under DESTDIR/LIBDIR"
  [ -f "$D$Pd/include/tokenchecker.hpp" ] || fail "headers not under DESTDIR/PREFIX/include"
  # --strip: smaller, no debug sections, SONAME kept (the programs below link against these).
  [ "$(stat -c %s "$D$Pd/lib64/libtokenchecker.a")" -lt "$(stat -c %s "$rel/libtokenchecker.a")" ] || fail "--strip: .a not smaller"
  ! readelf -S "$D$Pd/lib64/libtokenchecker.so.$VERSION" | grep debug_info >/dev/null || fail "--strip: .so has debug info"
  [ "$(soname_of "$D$Pd/lib64/libtokenchecker.so.$VERSION")" = "$SONAME" ] || fail "--strip lost the SONAME"
  [ -f "$D$Pd/lib64/cmake/tokenchecker/tokenchecker-config.cmake" ] || fail "cmake config not under LIBDIR"
  local pc=$D$Pd/lib64/pkgconfig/tokenchecker.pc
  expect_grep "^prefix=$Pd\$" "$pc"      # the final location, not the staging one
  expect_grep '^libdir=\$\{prefix\}/lib64$' "$pc"
  ! grep -q "$D" "$pc" || fail "DESTDIR leaked into the .pc file"
  # pkg-config's sysroot maps the recorded paths into the staging tree.
  local flags
  flags=$(PKG_CONFIG_PATH='' PKG_CONFIG_LIBDIR=$D$Pd/lib64/pkgconfig PKG_CONFIG_SYSROOT_DIR=$D \
          pkg-config --cflags --libs tokenchecker)
  echo "sysroot flags: $flags"
  # shellcheck disable=SC2086
  "$CC" -o "$work/ver-destdir" "$work/ver.c" $flags
  [ "$(LD_LIBRARY_PATH=$D$Pd/lib64 "$work/ver-destdir")" = "$VERSION $ABI" ] || fail "program against the DESTDIR copy"
  # The CMake package is relocatable: found in the staging tree, pointing into it.
  mkdir -p "$work/cmake-destdir"
  cat >"$work/cmake-destdir/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.14)
project(destdir NONE)
find_package(tokenchecker REQUIRED)
get_target_property(loc tokenchecker::tokenchecker IMPORTED_LOCATION)
get_target_property(inc tokenchecker::static INTERFACE_INCLUDE_DIRECTORIES)
message(STATUS "TC_LOCATION=${loc}")
message(STATUS "TC_INCLUDE=${inc}")
EOF
  # (tokenchecker_DIR, since CMake on Debian does not search lib64 under a prefix.)
  cmake -S "$work/cmake-destdir" -B "$work/cmake-destdir/build" \
    -Dtokenchecker_DIR="$D$Pd/lib64/cmake/tokenchecker" >"$work/cmake-destdir.log"
  cat "$work/cmake-destdir.log"
  expect_grep "TC_LOCATION=$D$Pd/lib64/libtokenchecker.so.$VERSION\$" "$work/cmake-destdir.log"
  expect_grep "TC_INCLUDE=$D$Pd/include\$" "$work/cmake-destdir.log"
}

test_cmake_versions() {
  local dir=$work/cmake-versions next_minor_req
  if [ "$MAJOR" = 0 ]; then next_minor_req=0.$((MINOR + 1)); else next_minor_req=$((MAJOR + 1)).0; fi
  mkdir -p "$dir"
  cat >"$dir/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.19)
project(versions NONE)
find_package(tokenchecker $MAJOR.$MINOR REQUIRED)
find_package(tokenchecker $VERSION EXACT REQUIRED)
if(NOT tokenchecker_VERSION STREQUAL "$VERSION" OR NOT tokenchecker_ABI_VERSION EQUAL $ABI)
  message(FATAL_ERROR "variables: \${tokenchecker_VERSION} \${tokenchecker_ABI_VERSION}")
endif()
foreach(t tokenchecker::tokenchecker tokenchecker::static)
  if(NOT TARGET \${t})
    message(FATAL_ERROR "no target \${t}")
  endif()
endforeach()
find_package(tokenchecker $MAJOR.$MINOR...<99 REQUIRED)
unset(tokenchecker_DIR CACHE)
find_package(tokenchecker $next_minor_req QUIET)
if(tokenchecker_FOUND)
  message(FATAL_ERROR "a request for $next_minor_req was met by $VERSION")
endif()
unset(tokenchecker_DIR CACHE)
find_package(tokenchecker 99.0 QUIET)
if(tokenchecker_FOUND)
  message(FATAL_ERROR "a request for 99.0 was met by $VERSION")
endif()
unset(tokenchecker_DIR CACHE)
find_package(tokenchecker 0.0...<$VERSION QUIET)
if(tokenchecker_FOUND)
  message(FATAL_ERROR "the range 0.0...<$VERSION was met by $VERSION")
endif()
message(STATUS "cmake version checks passed")
EOF
  cmake -S "$dir" -B "$dir/build" -DCMAKE_PREFIX_PATH="$P"
  # A broken installation (the libraries are gone) is "not found", with the reason.
  local broken=$work/broken
  mkdir -p "$broken/lib" "$broken/src"
  cp -r "$P/include" "$broken/"
  cp -r "$L/cmake" "$broken/lib/"
  printf 'cmake_minimum_required(VERSION 3.14)\nproject(broken NONE)\nfind_package(tokenchecker REQUIRED)\n' \
    >"$broken/src/CMakeLists.txt"
  if cmake -S "$broken/src" -B "$broken/build" -DCMAKE_PREFIX_PATH="$broken" >"$broken/log" 2>&1; then
    cat "$broken/log"; fail "a broken installation was found"
  fi
  expect_grep 'is missing \(broken installation' "$broken/log"
}

test_cpp_example() {
  local b=$work/build-example-cpp
  cmake -S "$root/examples/cpp" -B "$b" -DCMAKE_PREFIX_PATH="$P" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror -pedantic"
  cmake --build "$b" -j 2
  needed_of "$b/check" | grep -x "$SONAME" >/dev/null || fail "check: NEEDED lacks $SONAME"
  ! needed_of "$b/check_static" | grep tokenchecker >/dev/null || fail "check_static is linked dynamically"
  echo "--- check (tokenchecker::tokenchecker)"
  run_example "$b/check"
  echo "--- check_static (tokenchecker::static)"
  run_example "$b/check_static"
}

test_cpp_wrapper() {
  local b=$work/build-tests-cpp
  cmake -S "$root/tests/cpp" -B "$b" -DCMAKE_PREFIX_PATH="$P"
  cmake --build "$b" -j 2
  nm "$b/test_tokenchecker" | grep __asan_report >/dev/null || fail "not built with AddressSanitizer"
  ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$b/test_tokenchecker"
  ASAN_OPTIONS=detect_leaks=1 "$b/abi_mismatch"
}

test_hpp_strict() {
  # The wrapper alone, under stricter warnings than the tests use, and refused before C++17.
  printf '#include <tokenchecker.hpp>\nint main() { return tokenchecker::header_version.empty(); }\n' >"$work/strict.cpp"
  "$CXX" -std=c++17 -Wall -Wextra -Werror -pedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast \
    -Wnon-virtual-dtor -Wcast-qual -I"$P/include" -fsyntax-only "$work/strict.cpp"
  "$CXX" -std=c++20 -Wall -Wextra -Werror -pedantic -I"$P/include" -fsyntax-only "$work/strict.cpp"
  if "$CXX" -std=c++14 -I"$P/include" -fsyntax-only "$work/strict.cpp" 2>"$work/cxx14.err"; then
    fail "compiled as C++14"
  fi
  grep -q 'needs C++17' "$work/cxx14.err" || { cat "$work/cxx14.err"; fail "no clear C++17 message"; }
}

t "scripts/install: --help, bad arguments, --dry-run" test_install_usage
t "scripts/install into PREFIX: files, symlinks, .pc, CMake package" test_install_prefix
t "SONAME is $SONAME (readelf -d)" test_soname
t "versions agree (Cargo.toml, header, pkg-config, library)" test_versions
t "C example, shared, via pkg-config" test_c_shared
t "C example, static, via pkg-config (tokenchecker-static)" test_c_static
t "scripts/install with DESTDIR, LIBDIR and --strip" test_destdir
t "CMake package version checks" test_cmake_versions
t "C++ example via find_package (shared and static targets)" test_cpp_example
t "C++ wrapper tests (ASan + UBSan) and ABI check" test_cpp_wrapper
t "tokenchecker.hpp: strict warnings, C++20, refused before C++17" test_hpp_strict

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
