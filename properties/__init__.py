"""Invariants and the checkers that prove or refute them."""
