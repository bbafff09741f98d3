"""A plain (non-editable) `pip install` has everything the quick start serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mcp_gateway.store.upgrade import head

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (REPO / "mcp_gateway" / "openapi_specs").iterdir() if p.suffix in (".yaml", ".json"))


def test_a_built_wheel_serves_the_bundled_specs(tmp_path: Path) -> None:
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "cwd"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(REPO)], check=True, timeout=300)
    (wheel,) = wheels.glob("mcp_gateway-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, timeout=120)
    # Run from the installed copy (PYTHONPATH wins over the editable install), in a folder without
    # ./openapi_specs: the quick start's `serve` must find the specs shipped in the package.
    probe = (
        "import json, mcp_gateway; from mcp_gateway.cli import build_config, parser; "
        "from mcp_gateway.store.database import Database; from mcp_gateway.store import upgrade; "
        "c = build_config(parser().parse_args(['serve'])); "
        "db = Database('sqlite:///gateway.db'); "  # the store's migrations ship in the package too
        "from importlib.resources import files; from mcp_gateway.ui.render import environment; "
        "ui = files('mcp_gateway.ui'); environment().get_template('overview.html'); "  # the console's files
        "print(json.dumps({'package': mcp_gateway.__file__, 'specs': [a.spec for a in c.apis], "
        "'revision': db.current(), 'migrations': str(upgrade.MIGRATIONS), "
        "'console': sorted(f'{d}/{p.name}' for d in ('templates', 'static') for p in (ui / d).iterdir())}))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    found = json.loads(out.stdout)
    assert Path(found["package"]).is_relative_to(target)
    assert sorted(Path(s).name for s in found["specs"]) == SHIPPED and len(SHIPPED) >= 4
    assert all(Path(s).is_relative_to(target) and Path(s).is_file() for s in found["specs"])
    assert Path(found["migrations"]).is_relative_to(target) and found["revision"] == head()
    # The web console's templates and static files ship in the wheel: no build at install time.
    ui = REPO / "mcp_gateway" / "ui"
    assert found["console"] == sorted(f"{d}/{p.name}" for d in ("templates", "static") for p in (ui / d).iterdir())
