#!/usr/bin/env bash
# Packaging tests: the release artifacts (scripts/package) installed where their users are, on a
# machine without Rust, each running checks against the bundled fake Globus Auth:
#
# - versions: every artifact says the crate's version and C ABI generation (scripts/check-versions,
#   which fails on a disagreement), and so do the built artifacts' metadata;
# - the C tarball: unpacked and moved anywhere, its pkg-config files and CMake package point into
#   it; a C program built against it, shared and static;
# - Python: the manylinux wheel, copied alone into an empty directory and installed into a fresh
#   venv with no cargo on PATH, through the original API (TokenChecker(...).check_token(...));
#   a wheel without the library fails; a library of another C ABI generation is refused naming
#   both; the sdist without cargo fails with one message; `pip install bindings/python` of a
#   checkout without a built library fails loudly;
# - npm: the package tarball installed offline into an empty project with only node, npm and
#   basic utilities on PATH (no cargo, no compiler, no make, no python): the prebuilt addon;
#   without a prebuilt addon the install fails saying why; --build-from-source against an
#   installed library found by pkg-config; that addon refuses a library of another generation;
# - Go: only bindings/go, copied into an empty read-only directory (as the module cache holds
#   it), required by an empty module through `replace`, built with no cargo on PATH against an
#   installed copy (scripts/install into a temporary prefix, PKG_CONFIG_PATH) and against the
#   unpacked tarball (-tags tokenchecker_static); without tokenchecker.pc the build fails; the
#   program refuses a library of another generation.
#
#   tests/packaging/run.sh
#
# Needs the release build (cargo build --release -p tokenchecker -p fake-globus), a C compiler,
# pkg-config, readelf, node with npm, go, python3 with venv, and PyPI for scripts/package's
# tools (its venv is reused: $TARGET_DIR/package-venv). Builds the artifacts with
# `scripts/package --no-build` into its temporary directory.
# Environment: TARGET_DIR (cargo's target directory, default ./target), DIST=DIR (test these
# artifacts instead of building them), KEEP=1 (keep the temporary directory), PYTHON (python3),
# TC_PACKAGING_SDIST_BUILD=1 (also install the sdist with cargo: a full release build of the
# library, several minutes; off by default).
# Prints "ok"/"not ok" per test, the log of each failure, and "N passed, M failed"; exits 1 when
# a test failed.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$root/$TARGET_DIR ;; esac
rel=$TARGET_DIR/release
CC=${CC:-cc}

for f in "$rel/libtokenchecker.so" "$rel/libtokenchecker.a" "$rel/fake-globus"; do
  [ -e "$f" ] || { echo "missing $f: run cargo build --release -p tokenchecker -p fake-globus" >&2; exit 2; }
done
for tool in "$CC" pkg-config readelf node npm go "${PYTHON:-python3}" cmake; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing $tool" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/tc-packaging.XXXXXX")
fake_pid=
cleanup() {
  if [ -n "$fake_pid" ]; then kill "$fake_pid" 2>/dev/null; wait "$fake_pid" 2>/dev/null; fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "# kept $work"
  else
    chmod -R u+w "$work" 2>/dev/null
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
started=$(date +%s)

# ---- versions, from Cargo.toml and src/lib.rs ----------------------------------------------------
VERSION=$(awk '/^\[/ { p = ($0 == "[package]"); next } p && /^version[ \t]*=/ { gsub(/^[^"]*"|".*$/, ""); print; exit }' "$root/Cargo.toml")
ABI=$(sed -n 's/^pub const ABI_VERSION: u32 = \([0-9]*\);.*/\1/p' "$root/src/lib.rs")
OTHER_ABI=$((ABI + 1))
PY=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')
# pip: no cache (a wheel pip built from an sdist and cached would be reused later), quiet.
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
TOOLS=${TC_PACKAGE_VENV:-$TARGET_DIR/package-venv}   # scripts/package's venv (build, setuptools, auditwheel)

# ---- the fake Globus Auth ----------------------------------------------------------------------
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
ALICE=urn:globus:auth:identity:a11ce000-0000-4000-8000-000000000001
ALICE2=urn:globus:auth:identity:a11ce000-0000-4000-8000-000000000002

# ---- the artifacts ---------------------------------------------------------------------------------
if [ -n "${DIST:-}" ]; then
  dist=$(cd "$DIST" && pwd)
else
  dist=$work/dist
  echo "# scripts/package --no-build --out $dist"
  if ! "$root/scripts/package" --no-build --target-dir "$TARGET_DIR" --out "$dist" >"$work/package.log" 2>&1; then
    cat "$work/package.log"
    echo "scripts/package failed" >&2
    exit 1
  fi
  sed 's/^/#   /' "$work/package.log"
fi
TARBALL=$dist/tokenchecker-$VERSION-linux-$(uname -m).tar.gz
SDIST=$dist/tokenchecker-$VERSION.tar.gz
NPM=$dist/tokenchecker-$VERSION.tgz
wheels=("$dist/tokenchecker-$VERSION-cp39-abi3-manylinux_"*.whl)
WHEEL=${wheels[0]}
for f in "$TARBALL" "$SDIST" "$NPM" "$WHEEL"; do
  [ -f "$f" ] || { echo "missing artifact ${f:-(the wheel)} in $dist" >&2; exit 2; }
done

# ---- environments ------------------------------------------------------------------------------------
# PATH without cargo (nor rustc, rustup): each of its directories that holds none of them.
NOCARGO=
IFS=: read -ra dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  [ -n "$d" ] && [ -d "$d" ] || continue
  [ -e "$d/cargo" ] || [ -e "$d/rustc" ] || [ -e "$d/rustup" ] || NOCARGO=$NOCARGO${NOCARGO:+:}$d
done
# A bin directory with only node, npm and basic utilities: no cargo, no compiler, no make, no
# python, no pkg-config.
MINBIN=$work/minbin
mkdir -p "$MINBIN"
ln -s "$(command -v node)" "$MINBIN/node"
ln -s "$(readlink -f "$(command -v npm)")" "$MINBIN/npm"
for u in sh bash env cat ls mkdir rm cp mv ln chmod uname grep sed tar gzip readlink dirname basename head tail; do
  ln -s "$(command -v "$u")" "$MINBIN/$u"
done

# The stand-in for a library of another C ABI generation: every tc_* symbol of the real one,
# tc_abi_version answering ABI + 1 (SONAME libtokenchecker.so.0, as the real one).
STUB=$work/stub-lib
mkdir -p "$STUB"
{
  echo "/* another C ABI generation (tests/packaging/run.sh) */"
  echo "unsigned tc_abi_version(void) { return $OTHER_ABI; }"
  echo 'const char *tc_version(void) { return "9.9.9-other-abi"; }'
  nm -D --defined-only "$rel/libtokenchecker.so" | awk '$2 == "T" && $3 ~ /^tc_/ && $3 != "tc_abi_version" && $3 != "tc_version" { print "long " $3 "(void) { return 0; }" }'
} >"$STUB/stub.c"
"$CC" -shared -fPIC -Wl,-soname,libtokenchecker.so.0 -o "$STUB/libtokenchecker.so.0" "$STUB/stub.c" || exit 2
ln -s libtokenchecker.so.0 "$STUB/libtokenchecker.so"

# ---- harness ---------------------------------------------------------------------------------------
passed=0
failed=0
n=0
t() { # NAME FUNCTION [ARGS...]: runs the function with its output in a log; shows the log on failure.
  local name=$1 log rc t0
  shift
  n=$((n + 1))
  log=$work/logs/$(printf '%02d' "$n").log
  mkdir -p "$work/logs"
  t0=$(date +%s)
  # A plain command (not in an `if`, `||` or `&&`), so that errexit stays on inside the subshell.
  ( set -e; "$@" ) >"$log" 2>&1
  rc=$?
  if [ "$rc" = 0 ]; then
    passed=$((passed + 1))
    echo "ok $n - $name ($(( $(date +%s) - t0 )) s)"
  else
    failed=$((failed + 1))
    echo "not ok $n - $name"
    tail -n 80 "$log" | sed 's/^/#   /'
  fi
}
fail() { echo "FAIL: $*"; return 1; }
expect_grep() { # PATTERN FILE
  grep -Eq -- "$1" "$2" || { echo "expected /$1/ in $2:"; cat "$2"; return 1; }
}
needed_of() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'; }
# expect_failure LOG COMMAND...: the command must fail; its output goes to LOG.
expect_failure() {
  local log=$1
  shift
  if "$@" >"$log" 2>&1; then cat "$log"; fail "succeeded: $*"; fi
  cat "$log"
}

# ---- versions ------------------------------------------------------------------------------------

test_versions() {
  "$root/scripts/check-versions"
  # It fails when one of them disagrees: a copy of the files it reads, changed one at a time.
  local c=$work/versions
  for f in Cargo.toml src/lib.rs include/tokenchecker.h bindings/python/pyproject.toml \
           bindings/python/src/tokenchecker/__init__.py bindings/python/src/tokenchecker/_native.py \
           bindings/node/package.json bindings/go/version.go; do
    mkdir -p "$(dirname "$c/$f")"
    cp "$root/$f" "$c/$f"
  done
  "$root/scripts/check-versions" --root "$c" >/dev/null || fail "the copy disagrees before any change"
  local bumped=$VERSION-bumped
  sed -i "0,/^version = \"$VERSION\"/s//version = \"$bumped\"/" "$c/Cargo.toml"
  expect_failure "$work/versions.out" "$root/scripts/check-versions" --root "$c"
  expect_grep "FAIL bindings/node/package.json version +$VERSION \(expected $bumped\)" "$work/versions.out"
  expect_grep "FAIL bindings/go/version.go LibraryVersion +$VERSION" "$work/versions.out"
  expect_grep "FAIL bindings/python/pyproject.toml version" "$work/versions.out"
  cp "$root/Cargo.toml" "$c/Cargo.toml"
  sed -i "s/^pub const ABI_VERSION: u32 = $ABI;/pub const ABI_VERSION: u32 = $OTHER_ABI;/" "$c/src/lib.rs"
  expect_failure "$work/versions.out" "$root/scripts/check-versions" --root "$c"
  expect_grep "FAIL bindings/python/src/tokenchecker/_native.py ABI_VERSION +$ABI \(expected $OTHER_ABI\)" "$work/versions.out"
  expect_grep "FAIL bindings/node/package.json nativeLibrary.abiVersion" "$work/versions.out"
  expect_grep "FAIL bindings/go/version.go ABIVersion" "$work/versions.out"
  cp "$root/src/lib.rs" "$c/src/lib.rs"
  sed -i "s/^ABIVersion = $ABI\$/ABIVersion = $OTHER_ABI/; s/^\tABIVersion = $ABI\$/\tABIVersion = $OTHER_ABI/" "$c/bindings/go/version.go"
  expect_failure "$work/versions.out" "$root/scripts/check-versions" --root "$c"
  [ "$(grep -c FAIL "$work/versions.out")" = 1 ] || fail "one disagreement, not one FAIL line"
}

test_artifact_metadata() {
  # The file names, the wheel's METADATA, the npm package.json, the tarball's .pc files.
  echo "$WHEEL"
  "$PY" - "$WHEEL" "$VERSION" <<'EOF'
import sys, zipfile
wheel, version = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(wheel)
meta = z.read(f"tokenchecker-{version}.dist-info/METADATA").decode()
assert f"\nVersion: {version}\n" in meta, meta[:300]
tags = z.read(f"tokenchecker-{version}.dist-info/WHEEL").decode()
assert "Root-Is-Purelib: false" in tags and "Tag: cp39-abi3-manylinux_" in tags, tags
assert "tokenchecker/_lib/libtokenchecker.so" in z.namelist(), "the wheel does not carry tokenchecker/_lib/libtokenchecker.so"
assert "tokenchecker/_speedups.abi3.so" in z.namelist(), "the wheel does not carry the extension tokenchecker/_speedups.abi3.so"
print("wheel metadata ok")
EOF
  tar -xzf "$NPM" -C "$work" package/package.json package/prebuilds
  # shellcheck disable=SC2016 # JavaScript
  node -e '
    const [pj, version, abi] = process.argv.slice(1);
    const p = require(pj);
    if (p.version !== version || p.nativeLibrary.version !== version || p.nativeLibrary.abiVersion !== Number(abi))
      throw new Error(`package.json: ${JSON.stringify({ version: p.version, nativeLibrary: p.nativeLibrary })}`);
    const b = require(require("path").join(require("path").dirname(pj), "prebuilds", "linux-x64", "build.json"));
    if (b.libraryVersion !== version || b.abiVersion !== Number(abi)) throw new Error(JSON.stringify(b));
    console.log("npm metadata ok", JSON.stringify(b));
  ' "$work/package/package.json" "$VERSION" "$ABI"
  tar -xzf "$TARBALL" -C "$work" --wildcards '*/lib/pkgconfig/tokenchecker.pc'
  expect_grep "^Version: $VERSION\$" "$work"/tokenchecker-*/lib/pkgconfig/tokenchecker.pc
  expect_grep "^abi_version=$ABI\$" "$work"/tokenchecker-*/lib/pkgconfig/tokenchecker.pc
  grep -q "TOKENCHECKER_ABI_VERSION $ABI" <(tar -xzOf "$SDIST" "tokenchecker-$VERSION/native/src/lib.rs" | sed -n 's/^pub const ABI_VERSION: u32 = \([0-9]*\);/TOKENCHECKER_ABI_VERSION \1/p') ||
    fail "the sdist's crate has another ABI_VERSION"
}

# ---- the C tarball -------------------------------------------------------------------------------

test_tarball() {
  mkdir -p "$work/unpack" "$work/elsewhere"
  tar -xzf "$TARBALL" -C "$work/unpack"
  mv "$work/unpack/tokenchecker-$VERSION-linux-$(uname -m)" "$work/elsewhere/tc"
  local d=$work/elsewhere/tc pc
  ls -lR "$d"
  [ "$(readlink "$d/lib/libtokenchecker.so.0")" = "libtokenchecker.so.$VERSION" ] || fail "SONAME link"
  ! readelf -S "$d/lib/libtokenchecker.so.$VERSION" | grep -q debug_info || fail "the .so is not stripped"
  ! grep -rn -e "$root" -e "/tokenchecker-$VERSION-linux" "$d/lib/pkgconfig" "$d/lib/cmake" || fail "absolute paths in the tarball"
  export PKG_CONFIG_PATH=$d/lib/pkgconfig
  [ "$(pkg-config --modversion tokenchecker)" = "$VERSION" ] || fail "pkg-config --modversion"
  pc=$(pkg-config --cflags --libs tokenchecker)
  echo "pkg-config: $pc"
  case $pc in *"$d/"*) ;; *) fail "pkg-config does not point into the moved tree: $pc" ;; esac
  # shellcheck disable=SC2046
  "$CC" -std=c11 -O2 -o "$work/check-shared" "$root/examples/c/check.c" $(pkg-config --cflags --libs tokenchecker) \
    -Wl,-rpath,"$(pkg-config --variable=libdir tokenchecker)"
  # shellcheck disable=SC2046
  "$CC" -std=c11 -O2 -o "$work/check-static" "$root/examples/c/check.c" $(pkg-config --cflags --libs tokenchecker-static)
  ! needed_of "$work/check-static" | grep -q tokenchecker || fail "check-static needs libtokenchecker.so"
  local cfg="{\"client_id\":\"test-client\",\"client_secret\":\"test-secret\",\"expected_scopes\":[\"urn:globus:auth:scope:test:all\"],\"auth_url\":\"$URL\",\"groups_url\":\"$URL\"}"
  for exe in "$work/check-shared" "$work/check-static"; do
    printf 'tok-valid\n' | TC_CONFIG=$cfg "$exe" >"$work/check.out"
    expect_grep "^1 TC_OK .*\"effective_identity\":\"$ALICE\"" "$work/check.out"
  done
  local loaded
  loaded=$(ldd "$work/check-shared" | sed -n 's/^[[:space:]]*libtokenchecker.so.0 => \(.*\) (0x.*$/\1/p')
  [ "$(readlink -f "$loaded")" = "$(readlink -f "$d/lib/libtokenchecker.so.0")" ] || fail "check-shared loads '$loaded'"
  # The CMake package, from the moved tree.
  mkdir -p "$work/cmake-tarball"
  # shellcheck disable=SC2016 # CMake's ${l}
  printf 'cmake_minimum_required(VERSION 3.14)\nproject(t NONE)\nfind_package(tokenchecker %s EXACT REQUIRED)\nget_target_property(l tokenchecker::static IMPORTED_LOCATION)\nmessage(STATUS "TC_STATIC=${l}")\n' \
    "$VERSION" >"$work/cmake-tarball/CMakeLists.txt"
  cmake -S "$work/cmake-tarball" -B "$work/cmake-tarball/build" -DCMAKE_PREFIX_PATH="$d" >"$work/cmake-tarball.log"
  expect_grep "TC_STATIC=$d/lib/libtokenchecker.a\$" "$work/cmake-tarball.log"
}

# ---- Python --------------------------------------------------------------------------------------

# The check, through the original API, run from a directory with nothing but itself.
cat >"$work/check_wheel.py" <<'EOF'
import os
import sys

import tokenchecker
from tokenchecker import TokenChecker

url = os.environ["FAKE_URL"]
checker = TokenChecker("test-client", "test-secret", ["urn:globus:auth:scope:test:all"], auth_url=url, groups_url=url)
state = checker.check_token("tok-valid")
assert state.effective_identity == os.environ["ALICE"], state.effective_identity
assert state.identities == frozenset({os.environ["ALICE"], os.environ["ALICE2"]}), state.identities
assert state.check_authorization([os.environ["ALICE"]])
assert not state.check_authorization(["urn:globus:auth:identity:00000000-0000-4000-8000-000000000000"])
inactive = checker.check_token("tok-inactive")
assert inactive.identities == frozenset() and inactive.effective_identity is None
assert [e.code for e in inactive.errors] == ["TC_INACTIVE_TOKEN"], inactive.errors
assert checker.check_token("tok-wrong-scope").identities == frozenset()
assert state.check_authorization(["urn:globus:groups:id:11111111-1111-4111-8111-111111111111"])
assert state.matched == "urn:globus:groups:id:11111111-1111-4111-8111-111111111111", state.matched
lib = tokenchecker.library_path()
assert lib.startswith(sys.prefix + os.sep), f"{lib} is not in the venv {sys.prefix}"
assert tokenchecker.implementation() == "extension", tokenchecker.implementation()
assert tokenchecker.library_version() == tokenchecker.__version__ == os.environ["VERSION"]
assert tokenchecker.ABI_VERSION == int(os.environ["ABI"])
print("python ok:", state.effective_identity, lib, tokenchecker.library_version())
EOF

# venv_install DIR WHEEL: a fresh venv in DIR with WHEEL installed (nothing else, no index).
venv_install() {
  "$PY" -m venv "$1"
  env -i HOME="$work/home" PATH="$1/bin:$NOCARGO" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    "$1/bin/python" -m pip install -q --no-index --no-deps "$2"
}
# in_alone DIR COMMAND...: COMMAND in DIR, with a clean environment and no cargo on PATH.
in_alone() {
  local dir=$1
  shift
  (cd "$dir" && env -i HOME="$work/home" PATH="$NOCARGO" FAKE_URL="$URL" ALICE="$ALICE" ALICE2="$ALICE2" \
     VERSION="$VERSION" ABI="$ABI" "$@")
}

test_wheel() {
  ! env PATH="$NOCARGO" sh -c 'command -v cargo' || fail "cargo is still on PATH"
  mkdir -p "$work/py-alone"
  cp "$WHEEL" "$work/check_wheel.py" "$work/py-alone/"
  venv_install "$work/venv-wheel" "$work/py-alone/$(basename "$WHEEL")"
  in_alone "$work/py-alone" "$work/venv-wheel/bin/python" check_wheel.py
}

test_wheel_abi_mismatch() {
  in_alone "$work/py-alone" env TOKENCHECKER_LIB_DIR="$STUB" "$work/venv-wheel/bin/python" -c '
import tokenchecker
try:
    tokenchecker.TokenChecker("test-client", "test-secret", ["s"], verify_credentials=False)
except tokenchecker.LibraryNotFoundError as e:
    print(e)
else:
    raise SystemExit("a library of another ABI generation was accepted")
' >"$work/py-abi.out" 2>&1 || { cat "$work/py-abi.out"; fail "exit status"; }
  cat "$work/py-abi.out"
  expect_grep "C ABI generation $OTHER_ABI, this tokenchecker package needs $ABI" "$work/py-abi.out"
}

# A copy of what Python packaging reads in a checkout: the crate's sources and bindings/python,
# without target/ (no built library).
pystage() {
  local s=$work/pystage
  if [ ! -d "$s" ]; then
    mkdir -p "$s/bindings/python"
    cp -r "$root/Cargo.toml" "$root/Cargo.lock" "$root/build.rs" "$root/cbindgen.toml" "$root/src" "$root/include" "$s/"
    cp -r "$root/bindings/python/pyproject.toml" "$root/bindings/python/setup.py" \
          "$root/bindings/python/README.md" "$root/bindings/python/src" "$s/bindings/python/"
    find "$s/bindings/python/src" \( -name __pycache__ -o -name '*.egg-info' -o -name _lib \) -prune -exec rm -rf {} +
  fi
  echo "$s/bindings/python"
}

test_wheel_without_library_fails() {
  # The same test against a wheel without the library (TOKENCHECKER_BUNDLE=0, the explicit
  # opt-out) fails: the wheel test does test the bundled library.
  local src
  src=$(pystage)
  TOKENCHECKER_BUNDLE=0 "$TOOLS/bin/python" -m pip wheel -q --no-build-isolation \
    --no-deps --no-index -w "$work/nolib-wheel" "$src"
  ls "$work/nolib-wheel"
  local w
  w=$(find "$work/nolib-wheel" -name "tokenchecker-$VERSION-cp39-abi3-linux_*.whl" | head -n 1)
  [ -n "$w" ] || fail "no cp39-abi3 wheel (the extension, without the library)"
  mkdir -p "$work/py-nolib"
  cp "$w" "$work/check_wheel.py" "$work/py-nolib/"
  venv_install "$work/venv-nolib" "$work/py-nolib/$(basename "$w")"
  expect_failure "$work/py-nolib.out" in_alone "$work/py-nolib" "$work/venv-nolib/bin/python" check_wheel.py
  expect_grep "LibraryNotFoundError: tokenchecker: cannot load the native library" "$work/py-nolib.out"
}

test_sdist_without_cargo() {
  mkdir -p "$work/sdist-alone"
  cp "$SDIST" "$work/sdist-alone/"
  expect_failure "$work/sdist.out" in_alone "$work/sdist-alone" env PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    "$TOOLS/bin/python" -m pip wheel --no-build-isolation --no-deps --no-index -w "$work/sdist-alone/out" \
    "$(basename "$SDIST")"
  # shellcheck disable=SC2016 # the message's `cargo`
  expect_grep 'this source distribution builds the native library libtokenchecker with Rust, and `cargo` is not on PATH' "$work/sdist.out"
  [ "$(grep -c 'is not on PATH' "$work/sdist.out")" = 1 ] || fail "the message is not said once"
  ! grep -q Traceback "$work/sdist.out" || fail "a traceback instead of a message"
  [ ! -e "$work/sdist-alone/out" ] || ! ls "$work/sdist-alone/out"/*.whl 2>/dev/null || fail "a wheel was made"
}

test_sdist_with_cargo() {
  # A full release build of the library from the sdist's crate (not reusing target/).
  mkdir -p "$work/sdist-cargo"
  CARGO_TARGET_DIR=$TARGET_DIR/sdist-build "$TOOLS/bin/python" -m pip wheel \
    --no-build-isolation --no-deps --no-index -w "$work/sdist-cargo" "$SDIST"
  local w
  w=$(find "$work/sdist-cargo" -name "tokenchecker-$VERSION-cp39-abi3-linux_*.whl" | head -n 1)
  [ -n "$w" ] || fail "no wheel"
  cp "$work/check_wheel.py" "$work/sdist-cargo/"
  venv_install "$work/venv-sdist" "$w"
  in_alone "$work/sdist-cargo" "$work/venv-sdist/bin/python" check_wheel.py
}

test_checkout_without_library_fails() {
  local src
  src=$(pystage)
  [ ! -e "$src/../../target" ] || fail "the staged checkout has a target/"
  expect_failure "$work/checkout.out" "$TOOLS/bin/python" -m pip wheel \
    --no-build-isolation --no-deps --no-index -w "$work/checkout-wheel" "$src"
  expect_grep "target/release/libtokenchecker.so is not built, and the wheel needs it" "$work/checkout.out"
  expect_grep "cargo build --release -p tokenchecker" "$work/checkout.out"
  ! ls "$work/checkout-wheel"/*.whl 2>/dev/null || fail "a wheel was made"
}

# ---- npm -------------------------------------------------------------------------------------------

cat >"$work/check_npm.js" <<'EOF'
'use strict';
const assert = require('assert');
const path = require('path');
const tc = require('tokenchecker');

(async () => {
  const url = process.env.FAKE_URL;
  const checker = new tc.TokenChecker({
    clientId: 'test-client', clientSecret: 'test-secret',
    expectedScopes: ['urn:globus:auth:scope:test:all'], authUrl: url, groupsUrl: url,
  });
  const state = await checker.check('tok-valid');
  assert.strictEqual(state.effectiveIdentity, process.env.ALICE);
  await assert.rejects(checker.check('tok-inactive'), (e) => e.code === 'TC_INACTIVE_TOKEN');
  assert.strictEqual(tc.version(), process.env.VERSION);
  const where = require.resolve('tokenchecker');
  assert.ok(where.startsWith(path.join(process.cwd(), 'node_modules') + path.sep), where);
  checker.close();
  console.log('node ok:', state.effectiveIdentity, tc.version(), where);
})().catch((e) => { console.error(e); process.exit(1); });
EOF

# npm_project DIR: an empty project.
npm_project() {
  mkdir -p "$1"
  printf '{"name": "consumer", "version": "1.0.0", "private": true}\n' >"$1/package.json"
  cp "$work/check_npm.js" "$1/"
}
# npm_in DIR PATH [VAR=VALUE...] -- ARGS...: npm ARGS in DIR, offline, with a clean environment.
npm_in() {
  local dir=$1 path=$2
  shift 2
  local vars=()
  while [ "$1" != -- ]; do vars+=("$1"); shift; done
  shift
  (cd "$dir" && env -i HOME="$work/npm-home" PATH="$path" npm_config_cache="$work/npm-cache" \
     npm_config_update_notifier=false "${vars[@]}" npm "$@" --offline --no-audit --no-fund --foreground-scripts)
}
node_in() { # DIR PATH [VAR=VALUE...] -- ARGS...
  local dir=$1 path=$2
  shift 2
  local vars=()
  while [ "$1" != -- ]; do vars+=("$1"); shift; done
  shift
  (cd "$dir" && env -i PATH="$path" FAKE_URL="$URL" ALICE="$ALICE" VERSION="$VERSION" "${vars[@]}" node "$@")
}

test_npm_prebuilt() {
  ! env PATH="$MINBIN" sh -c 'command -v cargo || command -v cc || command -v gcc || command -v g++ || command -v make' ||
    fail "a compiler or cargo is on the minimal PATH"
  local p=$work/npm-prebuilt
  npm_project "$p"
  cp "$NPM" "$work/npm-alone.tgz"
  npm_in "$p" "$MINBIN" -- install "$work/npm-alone.tgz" >"$work/npm.out" 2>&1 || { cat "$work/npm.out"; fail "npm install"; }
  cat "$work/npm.out"
  expect_grep "tokenchecker install: using the prebuilt addon prebuilds/linux-x64/tokenchecker.node" "$work/npm.out"
  [ -d "$p/node_modules/tokenchecker" ] && [ ! -L "$p/node_modules/tokenchecker" ] || fail "not installed as a copy"
  [ ! -e "$p/node_modules/tokenchecker/build" ] || fail "something was built"
  ! needed_of "$p/node_modules/tokenchecker/prebuilds/linux-x64/tokenchecker.node" | grep -q tokenchecker ||
    fail "the prebuilt addon needs libtokenchecker.so"
  node_in "$p" "$MINBIN" -- check_npm.js
}

test_npm_without_prebuilt_fails() {
  # The same install of a package without the prebuilt addon, on the same machine, fails (and
  # says why): the test above does test the prebuilt addon.
  local x=$work/npm-noprebuilt p=$work/npm-noprebuilt-project
  mkdir -p "$x"
  tar -xzf "$NPM" -C "$x"
  rm -rf "$x/package/prebuilds"
  tar -czf "$work/noprebuilt.tgz" -C "$x" package
  npm_project "$p"
  expect_failure "$work/npm-noprebuilt.out" npm_in "$p" "$MINBIN" -- install "$work/noprebuilt.tgz"
  expect_grep "building the addon from source \(no prebuilt addon for linux-x64 in this package\)" "$work/npm-noprebuilt.out"
  expect_grep "libtokenchecker.so not found: building the addon needs the tokenchecker library" "$work/npm-noprebuilt.out"
  [ ! -e "$p/node_modules/tokenchecker" ] || fail "left installed"
}

test_npm_source_build() {
  # --build-from-source (the path of platforms without a prebuilt addon): node-gyp against an
  # installed copy found by pkg-config, no cargo on PATH. Then that library is replaced by one
  # of another C ABI generation: the addon refuses it, naming both.
  local P=$work/prefix-node p=$work/npm-source
  "$root/scripts/install" --no-build --prefix "$P" --target-dir "$TARGET_DIR" >/dev/null
  npm_project "$p"
  npm_in "$p" "$NOCARGO" TOKENCHECKER_BUILD_FROM_SOURCE=1 PKG_CONFIG_PATH="$P/lib/pkgconfig" -- install "$NPM" \
    >"$work/npm-source.out" 2>&1 || { cat "$work/npm-source.out"; fail "npm install --build-from-source"; }
  cat "$work/npm-source.out"
  expect_grep "library from pkg-config: $P/lib" "$work/npm-source.out"
  local addon=$p/node_modules/tokenchecker/build/Release/tokenchecker.node
  needed_of "$addon" | grep -qx libtokenchecker.so.0 || fail "the addon does not link libtokenchecker.so.0"
  node_in "$p" "$NOCARGO" -- check_npm.js
  cp "$STUB/libtokenchecker.so.0" "$P/lib/libtokenchecker.so.$VERSION"
  expect_failure "$work/npm-abi.out" node_in "$p" "$NOCARGO" -- -e "require('tokenchecker')"
  expect_grep "TC_ABI_MISMATCH" "$work/npm-abi.out"
  expect_grep "has C ABI $OTHER_ABI but this addon was built for ABI $ABI" "$work/npm-abi.out"
}

# ---- Go ----------------------------------------------------------------------------------------------

GOMOD=$work/modcache/github.com/tokenchecker/tokenchecker/bindings/go@v$VERSION
GOAPP=$work/goapp
setup_go() {
  mkdir -p "$(dirname "$GOMOD")" "$GOAPP"
  cp -r "$root/bindings/go" "$GOMOD"
  chmod -R a-w "$GOMOD"
  cat >"$GOAPP/go.mod" <<EOF
module example.com/consumer

go 1.24

require github.com/tokenchecker/tokenchecker/bindings/go v$VERSION

replace github.com/tokenchecker/tokenchecker/bindings/go => $GOMOD
EOF
  cat >"$GOAPP/main.go" <<'EOF'
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
)

func main() {
	url := os.Getenv("FAKE_URL")
	c, err := tokenchecker.New(tokenchecker.Config{
		ClientID: "test-client", ClientSecret: "test-secret",
		ExpectedScopes: []string{"urn:globus:auth:scope:test:all"}, AuthURL: url, GroupsURL: url,
	})
	if err != nil {
		fmt.Println("New:", err)
		os.Exit(1)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.Check(ctx, "tok-valid")
	if err != nil {
		fmt.Println("tok-valid:", err)
		os.Exit(1)
	}
	fmt.Println("valid", s.EffectiveIdentity)
	if _, err := c.Check(ctx, "tok-inactive"); !errors.Is(err, tokenchecker.ErrInactiveToken) {
		fmt.Println("tok-inactive:", err)
		os.Exit(1)
	}
	fmt.Println("inactive refused")
	fmt.Println("versions", tokenchecker.Version(), tokenchecker.LibraryVersion, tokenchecker.ABIVersion)
}
EOF
}
# go_in PKG_CONFIG_PATH ARGS...: go ARGS in the app, no cargo on PATH, nothing downloaded, only
# PKG_CONFIG_PATH searched. ($CGO_CFLAGS_EXTRA: see test_go_without_library_fails.)
go_in() {
  local pcp=$1
  shift
  (cd "$GOAPP" && env -u GOFLAGS -u CGO_LDFLAGS PATH="$NOCARGO" PKG_CONFIG_PATH="$pcp" PKG_CONFIG_LIBDIR="$pcp" \
     CGO_CFLAGS="-g -O2 ${CGO_CFLAGS_EXTRA:-}" GOPROXY=off GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=mod \
     CGO_ENABLED=1 go "$@")
}
check_go_output() { # FILE
  expect_grep "^valid $ALICE\$" "$1"
  expect_grep "^inactive refused\$" "$1"
  expect_grep "^versions $VERSION $VERSION $ABI\$" "$1"
}

test_go_pkgconfig() {
  local P=$work/prefix-go
  "$root/scripts/install" --no-build --prefix "$P" --target-dir "$TARGET_DIR" >/dev/null
  [ ! -e "$GOMOD/../../include" ] || fail "the module copy has the checkout's include/ beside it"
  go_in "$P/lib/pkgconfig" build -o "$work/app-shared" .
  needed_of "$work/app-shared" | grep -qx libtokenchecker.so.0 || fail "not linked with libtokenchecker.so.0"
  (cd "$work" && env -i PATH="$NOCARGO" LD_LIBRARY_PATH="$P/lib" FAKE_URL="$URL" ./app-shared) >"$work/go.out" 2>&1 ||
    { cat "$work/go.out"; fail "app-shared"; }
  cat "$work/go.out"
  check_go_output "$work/go.out"
  # The same program with a library of another C ABI generation first on the loader's path.
  expect_failure "$work/go-abi.out" env -i PATH="$NOCARGO" LD_LIBRARY_PATH="$STUB" FAKE_URL="$URL" "$work/app-shared"
  expect_grep "the tokenchecker library 9.9.9-other-abi has C ABI $OTHER_ABI but this binding was built for ABI $ABI" "$work/go-abi.out"
}

test_go_static_tarball() {
  local T=$work/unpack-go
  mkdir -p "$T"
  tar -xzf "$TARBALL" -C "$T" --strip-components=1
  go_in "$T/lib/pkgconfig" build -tags tokenchecker_static -o "$work/app-static" .
  ! needed_of "$work/app-static" | grep -q tokenchecker || fail "app-static needs libtokenchecker.so"
  (cd "$work" && env -i PATH="$NOCARGO" FAKE_URL="$URL" ./app-static) >"$work/go-static.out" 2>&1 ||
    { cat "$work/go-static.out"; fail "app-static"; }
  cat "$work/go-static.out"
  check_go_output "$work/go-static.out"
}

test_go_without_library_fails() {
  mkdir -p "$work/empty-pc"
  # Go's build cache does not key a package on pkg-config's answer: the build of the same
  # package with the same flags above would be reused, flags and all. A flag of its own makes
  # this a build of its own (README.md of bindings/go says so: `go clean -cache` after moving
  # the library).
  CGO_CFLAGS_EXTRA=-DTC_PACKAGING_NO_LIBRARY expect_failure "$work/go-nolib.out" go_in "$work/empty-pc" build -o "$work/app-nolib" .
  expect_grep "Package '?tokenchecker'? was not found in the pkg-config search path" "$work/go-nolib.out"
}

# ---- run -------------------------------------------------------------------------------------------

setup_go
t "versions agree (scripts/check-versions), and a disagreement fails" test_versions
t "artifact metadata: wheel, npm package, tarball .pc, sdist" test_artifact_metadata
t "C tarball: unpacked and moved, pkg-config + CMake, C program shared and static" test_tarball
t "Python wheel: fresh venv, alone, no cargo: checks through TokenChecker(...).check_token" test_wheel
t "Python wheel: a library of another C ABI generation is refused, naming both" test_wheel_abi_mismatch
t "Python wheel without the library (TOKENCHECKER_BUNDLE=0): the same check fails" test_wheel_without_library_fails
t "Python sdist without cargo: fails with one message" test_sdist_without_cargo
t "pip install bindings/python of a checkout without a built library: fails loudly" test_checkout_without_library_fails
if [ "${TC_PACKAGING_SDIST_BUILD:-0}" = 1 ]; then
  t "Python sdist with cargo: builds the library, the wheel passes the check" test_sdist_with_cargo
fi
t "npm: offline install, no cargo/compiler on PATH: the prebuilt addon checks tokens" test_npm_prebuilt
t "npm: without a prebuilt addon, the same install fails saying why" test_npm_without_prebuilt_fails
t "npm: --build-from-source against an installed library (pkg-config); another ABI refused" test_npm_source_build
t "Go: the module alone, default build (pkg-config, installed copy), no cargo; another ABI refused" test_go_pkgconfig
t "Go: -tags tokenchecker_static against the unpacked tarball" test_go_static_tarball
t "Go: without tokenchecker.pc the build fails" test_go_without_library_fails

echo "$passed passed, $failed failed ($(( $(date +%s) - started )) s)"
[ "$failed" = 0 ]
