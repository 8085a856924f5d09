"""AMD 48882 encoded: field tables, the two-way bit-vector backend and pure semantics."""
