"""Build hooks: bundle libtokenchecker in the wheel.

The library is taken from $TOKENCHECKER_LIB_DIR, else from ../../target/release (a checkout
after `cargo build --release`). Set TOKENCHECKER_BUNDLE=0 to build a wheel without it (it is
then found through $TOKENCHECKER_LIB_DIR or the system library path at run time). With the
library bundled the wheel is platform-specific (py3-none-<platform>): the package itself has no
compiled code, only the copied library.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = {"darwin": "libtokenchecker.dylib", "win32": "tokenchecker.dll"}.get(sys.platform, "libtokenchecker.so")


def _library() -> str | None:
    if os.environ.get("TOKENCHECKER_BUNDLE", "1") == "0":
        return None
    env = os.environ.get("TOKENCHECKER_LIB_DIR")
    candidates = [os.path.join(env, NAME)] if env else []
    candidates.append(os.path.join(HERE, "..", "..", "target", "release", NAME))
    for path in candidates:
        if os.path.isfile(path):
            return os.path.realpath(path)
    sys.stderr.write(
        "tokenchecker: no %s found in %s; building without a bundled library "
        "(set TOKENCHECKER_LIB_DIR at run time)\n" % (NAME, " or ".join(candidates))
    )
    return None


LIBRARY = _library()


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        dest_dir = os.path.join(self.build_lib, "tokenchecker", "_lib")
        shutil.rmtree(dest_dir, ignore_errors=True)  # never a stale copy from an earlier build
        if LIBRARY is None:
            return
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, NAME)
        strip = shutil.which("strip") if sys.platform.startswith("linux") else None
        if strip:  # debug info is most of the file: the wheel is ~5x smaller without it
            done = subprocess.run([strip, "--strip-debug", "-o", dest, LIBRARY], check=False)
            if done.returncode == 0:
                return
        shutil.copyfile(LIBRARY, dest)
        os.chmod(dest, 0o755)


class BdistWheel(bdist_wheel):
    def finalize_options(self) -> None:
        super().finalize_options()
        if LIBRARY is not None:
            self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:
        if LIBRARY is None:
            return ("py3", "none", "any")
        plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        return ("py3", "none", plat)


setup(cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel})
