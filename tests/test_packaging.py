"""A plain `pip install .` puts only the `amdvi` namespace into site-packages, with the `amdvi` script;
the checkout has no `amdvi` folder, so running from its root imports the installed packages."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_only_the_amdvi_namespace(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("amdvi_spec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"amdvi", next(t for t in top if t.endswith(".dist-info"))}
    for sub in ("spec", "models", "properties"):
        assert f"amdvi/{sub}/__init__.py" in names
    assert "amdvi/spec/device_table.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "amdvi = amdvi.frontend.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "amdvi/frontend/commands/__init__.py" in names and "amdvi/__init__.py" not in names
    assert "amdvi/frontend/trace.schema.json" in names  # amdvi replay validates against the shipped schema
    assert "amdvi/properties/solver_choice.json" in names  # amdvi prove's default solver per obligation


def test_no_folder_at_the_checkout_root_shadows_the_installed_packages():
    """`amdvi` is a namespace with no folder in the checkout: from the root, `amdvi.spec` still imports."""
    assert not (ROOT / "amdvi").exists()  # the folder that used to shadow the installed `amdvi`
    proc = subprocess.run([sys.executable, "-c", "import amdvi.spec, amdvi.frontend"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_python_m_runs_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "amdvi.frontend", "explain", "DTE.GV", "--json"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert '"bits": "55"' in proc.stdout
