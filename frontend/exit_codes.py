"""The exit codes of ``amdvi``, defined once: scripts and CI branch on them."""

OK = 0
PROPERTY_FAILS = 1  # a property does not hold; for a replayed trace: the trace reproduces
BAD_INPUT = 2  # the user's input is wrong: one line ``amdvi: error: ...`` on standard error, no traceback
SOLVERS_DISAGREE = 3  # amdvi prove: two solvers gave different definite answers to one query (named)
INTERRUPTED = 130  # Ctrl-C, the code shells give a process ended by SIGINT
