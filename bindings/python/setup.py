"""Build hooks: bundle libtokenchecker in the wheel, and the crate's sources in the sdist.

The wheel's library comes from the first of these that applies, and nothing else: a wheel
without it is never made by accident.

1. ``TOKENCHECKER_BUNDLE=0``: none. The wheel is ``py3-none-any`` and loads a library from
   ``$TOKENCHECKER_LIB_DIR`` or the system library path at run time (for distributions that
   package the library apart).
2. ``$TOKENCHECKER_LIB_DIR/libtokenchecker.so`` (the release tarball's ``lib/``, say).
3. A checkout: ``../../target/release/libtokenchecker.so``, after
   ``cargo build --release -p tokenchecker`` at the repository root; missing, the build stops.
4. The sdist: ``native/`` holds the crate (its sources and a ``Cargo.toml`` of its own), built
   with ``cargo build --release --lib`` into ``$CARGO_TARGET_DIR`` or ``build/cargo-target``;
   without cargo on ``PATH`` the build stops, saying what to do.

With the library the wheel is platform-specific (``py3-none-<platform>``: the copied library,
debug information stripped); ``scripts/package`` at the repository root checks it and retags it
``manylinux`` with auditwheel.

The compiled extension ``tokenchecker._speedups`` (``src/tokenchecker/_speedups.c``, CPython's
limited API: one ``cp39-abi3`` wheel for every CPython from 3.9) is built too, against
``include/tokenchecker.h`` (``$TOKENCHECKER_INCLUDE_DIR``, ``$TOKENCHECKER_LIB_DIR/../include``
(the release tarball), the checkout's or the sdist's ``include/``); it does not link the library
(it calls the copy ctypes loaded). ``TOKENCHECKER_PY_PURE=1`` builds without it: the package then
runs on ctypes alone, as it does at run time with ``TOKENCHECKER_PY_PURE=1``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Distribution, Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.errors import SetupError

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = {"darwin": "libtokenchecker.dylib", "win32": "tokenchecker.dll"}.get(sys.platform, "libtokenchecker.so")
#: The repository root, when this is bindings/python of a checkout.
CHECKOUT = os.path.normpath(os.path.join(HERE, "..", ".."))
#: The crate's sources in an sdist.
NATIVE = os.path.join(HERE, "native")
#: What of the crate the sdist carries (besides a Cargo.toml of its own).
CRATE_FILES = ("Cargo.lock", "build.rs", "cbindgen.toml", "src", "include")


def _bundle() -> bool:
    return os.environ.get("TOKENCHECKER_BUNDLE", "1") != "0"


# ---- the compiled extension ---------------------------------------------------------------------


def _pure() -> bool:
    return os.environ.get("TOKENCHECKER_PY_PURE", "") == "1"


def _include_dir() -> str:
    """The directory holding tokenchecker.h (see the module's docstring)."""
    candidates = [os.environ.get("TOKENCHECKER_INCLUDE_DIR")]
    lib_dir = os.environ.get("TOKENCHECKER_LIB_DIR")
    if lib_dir:
        candidates.append(os.path.join(lib_dir, "..", "include"))
    candidates += [os.path.join(CHECKOUT, "include"), os.path.join(NATIVE, "include")]
    for d in candidates:
        if d and os.path.isfile(os.path.join(d, "tokenchecker.h")):
            return os.path.normpath(d)
    raise SetupError(
        "tokenchecker: the compiled extension needs include/tokenchecker.h: set TOKENCHECKER_INCLUDE_DIR "
        "to the directory holding it (the release tarball's include/), or build from a checkout or the "
        "sdist; TOKENCHECKER_PY_PURE=1 builds without the extension (ctypes only)"
    )


def _ext_modules() -> list[Extension]:
    if _pure():
        return []
    return [
        Extension(
            "tokenchecker._speedups",
            ["src/tokenchecker/_speedups.c"],
            include_dirs=[_include_dir()],
            define_macros=[("Py_LIMITED_API", "0x03090000")],
            py_limited_api=True,
            # an undeclared function under the limited API is a crash, never a warning
            extra_compile_args=["-Wall", "-Wextra", "-O2", "-Werror=implicit-function-declaration"],
        )
    ]


def _is_crate(root: str) -> bool:
    return os.path.isfile(os.path.join(root, "Cargo.toml")) and os.path.isfile(os.path.join(root, "src", "lib.rs"))


def _cargo_build(build_temp: str) -> str:
    """Builds the library from the sdist's ``native/`` with cargo; returns its path."""
    cargo = shutil.which("cargo")
    if cargo is None:
        raise SetupError(
            "tokenchecker: this source distribution builds the native library libtokenchecker "
            "with Rust, and `cargo` is not on PATH. Install a prebuilt wheel instead "
            "(pip install --only-binary tokenchecker tokenchecker: Linux x86_64 with glibc 2.34 "
            "or later), or install Rust 1.80 or later (https://rustup.rs) and retry, or set "
            "TOKENCHECKER_LIB_DIR to a directory holding a built " + NAME + " (the release "
            "tarball's lib/)."
        )
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(build_temp, "cargo-target")
    cmd = [cargo, "build", "--release", "--lib", "--manifest-path", os.path.join(NATIVE, "Cargo.toml")]
    sys.stderr.write(f"tokenchecker: building the native library: {' '.join(cmd)} (target dir {target})\n")
    env = dict(os.environ)
    env.setdefault("CARGO_PROFILE_RELEASE_DEBUG", "0")  # the wheel's copy is stripped anyway
    done = subprocess.run(cmd + ["--target-dir", target], env=env, check=False)
    built = os.path.join(target, "release", NAME)
    if done.returncode != 0 or not os.path.isfile(built):
        raise SetupError("tokenchecker: `cargo build` of the native library failed (see above)")
    return built


def _library(build_temp: str) -> str:
    """The library to bundle (see the module's docstring)."""
    env = os.environ.get("TOKENCHECKER_LIB_DIR")
    if env:
        path = os.path.join(env, NAME)
        if not os.path.isfile(path):
            raise SetupError(f"tokenchecker: TOKENCHECKER_LIB_DIR={env} holds no {NAME}")
        return os.path.realpath(path)
    if _is_crate(CHECKOUT):
        path = os.path.join(CHECKOUT, "target", "release", NAME)
        if not os.path.isfile(path):
            raise SetupError(
                f"tokenchecker: {path} is not built, and the wheel needs it. Build it first, at the "
                "repository root: cargo build --release -p tokenchecker (or set TOKENCHECKER_LIB_DIR "
                "to a directory holding " + NAME + "; TOKENCHECKER_BUNDLE=0 builds a wheel without "
                "the library, which then must be installed apart)"
            )
        return os.path.realpath(path)
    if _is_crate(NATIVE):
        return _cargo_build(build_temp)
    raise SetupError(
        f"tokenchecker: no {NAME} to bundle: set TOKENCHECKER_LIB_DIR to a directory holding it, or "
        "build from a checkout of the repository or from the source distribution"
    )


def _native_manifest(text: str) -> str:
    """The crate's Cargo.toml for the sdist: its own workspace, without what only the repository
    has (workspace members, dev-dependencies, benches, tests, examples, binaries)."""
    dropped = re.compile(
        r"^\s*\[\[?\s*(workspace\b|dev-dependencies\b|target\..*\.dev-dependencies\b|bench\b|test\b|example\b|bin\b)"
    )
    header = re.compile(r"^\s*\[")
    out, keep = [], True
    for line in text.splitlines():
        if header.match(line):
            keep = not dropped.match(line)
        if keep:
            out.append(line)
    note = "# Built on its own by setup.py (the sdist of the Python binding)."
    return "\n".join(out).rstrip() + f"\n\n{note}\n[workspace]\n"


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        dest_dir = os.path.join(self.build_lib, "tokenchecker", "_lib")
        shutil.rmtree(dest_dir, ignore_errors=True)  # never a stale copy from an earlier build
        if not _bundle():
            return
        library = _library(self.get_finalized_command("build").build_temp)
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, NAME)
        strip = shutil.which("strip") if sys.platform.startswith("linux") else None
        if strip:  # debug info is most of the file: the wheel is ~5x smaller without it
            done = subprocess.run([strip, "--strip-debug", "-o", dest, library], check=False)
            if done.returncode == 0:
                return
        shutil.copyfile(library, dest)
        os.chmod(dest, 0o755)


class BinaryDistribution(Distribution):
    """Not pure when it bundles the library or the extension: the package goes to platlib."""

    def has_ext_modules(self) -> bool:
        return _bundle() or not _pure()


class BdistWheel(bdist_wheel):
    def get_tag(self) -> tuple[str, str, str]:
        plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        if not _pure():  # the extension: CPython's stable ABI from 3.9
            return ("cp39", "abi3", plat)
        if not _bundle():
            return ("py3", "none", "any")
        return ("py3", "none", plat)


class Sdist(sdist):
    """Adds ``native/``: the crate's sources, so that the sdist builds the library with cargo."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        dest = os.path.join(base_dir, "native")
        shutil.rmtree(dest, ignore_errors=True)
        if _is_crate(CHECKOUT):
            os.makedirs(dest)
            for name in CRATE_FILES:
                src = os.path.join(CHECKOUT, name)
                if os.path.isdir(src):
                    shutil.copytree(src, os.path.join(dest, name), ignore=shutil.ignore_patterns("*.orig", "*.rej"))
                else:
                    shutil.copy2(src, os.path.join(dest, name))
            with open(os.path.join(CHECKOUT, "Cargo.toml"), encoding="utf-8") as f:
                manifest = _native_manifest(f.read())
            with open(os.path.join(dest, "Cargo.toml"), "w", encoding="utf-8") as f:
                f.write(manifest)
        elif _is_crate(NATIVE):  # an sdist made from an sdist
            shutil.copytree(NATIVE, dest, ignore=shutil.ignore_patterns("target"))
        else:
            raise SetupError("tokenchecker: the sdist needs the crate's sources (make it from a checkout)")


setup(
    distclass=BinaryDistribution,
    cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel, "sdist": Sdist},
    ext_modules=_ext_modules(),
    exclude_package_data={"tokenchecker": ["*.c"]},  # the extension's source: in the sdist, not the wheel
)
