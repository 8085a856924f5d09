"""``python -m amdvi`` runs the command line."""

from amdvi.cli import main

raise SystemExit(main())
