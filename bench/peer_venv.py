"""A peer product pinned in its own venv under ~/.cache/mcp-gateway/bench/, never a project dependency.

The comparison benchmarks (bench/llm_proxy.py: LiteLLM; bench/peers.py: FastMCP) install the
peer they measure against once, from PyPI, into a venv of its own, and reuse it while it holds
the pinned version.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path.home() / ".cache" / "mcp-gateway" / "bench"


def ensure(venv: Path, dist: str, version: str, requirements: list[str]) -> Path:
    """The venv's python, with `dist` at `version`; `requirements` are pip-installed when it is missing
    or holds another version."""
    python = venv / "bin" / "python"
    if python.exists():
        found = subprocess.run(
            [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if found == version:
            return python
    print(f"installing {' '.join(requirements)} into {venv} (once)", file=sys.stderr)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
    return python
