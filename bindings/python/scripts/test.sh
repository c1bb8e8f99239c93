#!/usr/bin/env bash
# Tests of the Python binding: a fresh venv, `pip install .[test]` (+ mypy and ruff) from the
# registry (which builds the compiled extension tokenchecker._speedups), then ruff, mypy, the
# extension's C source with -Wall -Wextra -Werror, and pytest against the library and
# fake-globus twice: with the extension (the whole suite), then with TOKENCHECKER_PY_PURE=1 (the
# ctypes layer; the whole suite but the APT release tests, whose per-release venvs run the same
# code through tokenchecker.apt), and a smoke run of bench/bench.py.
#
#   TOKENCHECKER_LIB_DIR  directory of libtokenchecker.so (default: ../../target/release from here)
#   FAKE_GLOBUS           the fake-globus binary        (default: ../../target/release/fake-globus)
#   PYTHON                the interpreter for the venv  (default: python3)
#   CC                    the C compiler for the warnings check (default: cc)
#   TC_PY_VENV            reuse this venv directory instead of a temporary one
#   TC_APT_VENVS          keep the per-release globus-action-provider-tools venvs of
#                         tests/test_apt_releases.py here (default: a temporary directory)
#   TC_SKIP_APT_RELEASES  =1 leaves tests/test_apt_releases.py out, loudly, for local use only:
#                         refused when CI is set (CI always runs them)
#
# Exits non-zero on any failure, or when pytest ran no test.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
release="$(cd "$here/../.." && pwd)/target/release"
export TOKENCHECKER_LIB_DIR="$(cd "${TOKENCHECKER_LIB_DIR:-$release}" && pwd)"
export FAKE_GLOBUS="${FAKE_GLOBUS:-$release/fake-globus}"
python="${PYTHON:-python3}"

for f in "$TOKENCHECKER_LIB_DIR/libtokenchecker.so" "$FAKE_GLOBUS"; do
  [ -e "$f" ] || { echo "test.sh: $f not found: run \`cargo build --release\` first" >&2; exit 1; }
done

if [ -n "${TC_PY_VENV:-}" ]; then
  venv="$TC_PY_VENV"
  cleanup() { :; }
else
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/tokenchecker-py.XXXXXX")"
  venv="$tmp/venv"
  cleanup() { rm -rf "$tmp"; }
fi
trap cleanup EXIT

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/python" -m pip install -q "$here[test,lint]"
# the build leaves these in the source tree
rm -rf "$here/build" "$here/src/tokenchecker.egg-info"

cd "$here"
echo "== ruff"
"$venv/bin/ruff" check src tests bench
echo "== mypy"
"$venv/bin/mypy"
echo "== C extension: -Wall -Wextra -Werror"
pyinc="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
"${CC:-cc}" -c -o /dev/null -O2 -fPIC -std=gnu11 -Wall -Wextra -Werror -DPy_LIMITED_API=0x03090000 \
  -I"$pyinc" -I"$here/../../include" "$here/src/tokenchecker/_speedups.c"
echo "== pytest (the compiled extension)"
# the installed package (with its bundled library) is what is tested, not src/
set +e
apt_args=()
if [ "${TC_SKIP_APT_RELEASES:-}" = "1" ]; then
  if [ -n "${CI:-}" ]; then
    echo "test.sh: TC_SKIP_APT_RELEASES=1 is refused under CI: the APT release tests must run" >&2
    exit 1
  fi
  echo "test.sh: WARNING: TC_SKIP_APT_RELEASES=1: tests/test_apt_releases.py (every pinned" \
       "globus-action-provider-tools release) is NOT run" >&2
  apt_args=(--ignore=tests/test_apt_releases.py)
fi
"$venv/bin/python" -m pytest -p no:cacheprovider -q ${apt_args[@]+"${apt_args[@]}"} "$@" tests
status=$?
if [ "$status" -eq 0 ]; then
  echo "== pytest (TOKENCHECKER_PY_PURE=1: the ctypes layer)"
  TOKENCHECKER_PY_PURE=1 "$venv/bin/python" -m pytest -p no:cacheprovider -q \
    --ignore=tests/test_apt_releases.py "$@" tests
  status=$?
fi
if [ "$status" -eq 0 ]; then
  # a smoke run of the benchmark (both implementations, small sizes, no releases): that it runs,
  # not its figures (bench/bench.py without --smoke checks the goals)
  echo "== bench/bench.py --smoke"
  "$venv/bin/python" bench/bench.py --smoke
  status=$?
fi
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest ran no test" >&2
  exit 1
fi
exit "$status"
