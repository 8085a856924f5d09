"""``python -m amdvi.frontend`` runs the command line, for when the ``amdvi`` script is not on PATH."""

from amdvi.frontend.main import main

raise SystemExit(main())
