"""Writing a benchmark's results: one JSON document with the machine and the date, written atomically."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from amdvi.frontend.files import write_atomically


def write_results(benchmark: str, results: dict[str, Any], out: str | Path) -> None:
    doc = {
        "benchmark": benchmark,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine()},
        "results": results,
    }
    write_atomically(Path(out), json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
