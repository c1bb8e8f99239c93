"""The pinned globus-action-provider-tools releases and their venvs, shared by
tests/test_apt_releases.py (the release tests) and bench/bench.py (the releases' figures)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

#: release -> pinned requirements (the release, and a flask it supports).
RELEASES: Dict[str, List[str]] = {
    # 0.11.x needs flask 1.x (and MarkupSafe < 2.1 for its Jinja2 2.x)
    "0.11.3": ["globus-action-provider-tools==0.11.3", "flask==1.1.4", "markupsafe==2.0.1"],
    "0.12.0": ["globus-action-provider-tools==0.12.0", "flask==1.1.4", "markupsafe==2.0.1"],
    "0.18.0": ["globus-action-provider-tools==0.18.0", "flask==2.3.3"],
    "0.19.1": ["globus-action-provider-tools==0.19.1", "flask==2.3.3"],
    "0.20.1": ["globus-action-provider-tools==0.20.1", "flask==2.3.3"],
    "0.21.0": ["globus-action-provider-tools==0.21.0", "flask==2.3.3"],
}

# PyYAML 5.4.1 (required by 0.11/0.12) has no wheel for recent Pythons and its sdist only
# builds with Cython < 3: a constraint for pip's build environment.
BUILD_CONSTRAINTS = "cython<3\n"


def version_key(version: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


#: The releases, oldest first.
RELEASE_ORDER: List[str] = sorted(RELEASES, key=version_key)


def run(argv: List[str], what: str, timeout: float = 600, env: Any = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def venv(venvs_dir: Path, release: str) -> Path:
    """The python of a venv with the release's pinned requirements (made with pip from the
    registry on first use), reused while they are unchanged."""
    tag = f"py{sys.version_info[0]}{sys.version_info[1]}"
    path = venvs_dir / f"apt-{release}-{tag}"
    python = path / "bin" / "python"
    marker = path / "tc-apt-requirements.txt"
    wanted = "\n".join(RELEASES[release]) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    shutil.rmtree(path, ignore_errors=True)
    venvs_dir.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "venv", str(path)], f"creating the venv for {release}")
    constraints = venvs_dir / "build-constraints.txt"
    constraints.write_text(BUILD_CONSTRAINTS)
    env = dict(os.environ, PIP_CONSTRAINT=str(constraints), PIP_DISABLE_PIP_VERSION_CHECK="1")
    run([str(python), "-m", "pip", "install", "-q", *RELEASES[release]],
        f"pip install of globus-action-provider-tools {release}", env=env)
    marker.write_text(wanted)
    return python
