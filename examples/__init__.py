"""Example inputs shipped with amdvi: walk scenarios, broken files, and the sequence library that
``amdvi check`` runs when given no file (``sequences/``)."""
