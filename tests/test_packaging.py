"""A plain `pip install .` puts only the `amdvi` namespace into site-packages, with the `amdvi` script."""

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
    assert "amdvi = amdvi.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
