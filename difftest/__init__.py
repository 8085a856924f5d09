"""Differential testing against QEMU's emulated AMD IOMMU (``amdvi diff-qemu``, issue 16).

A *case* (``case``) is a memory image (device table, v1 tables) and steps (CPU stores, DMA by ``edu``
devices, command batches). ``qemu_side`` runs it on a QEMU process driven over qtest with no guest OS
(``machine``, ``qtest``); ``model_side`` computes the set of outcomes the specification allows with the
project's own model (``properties.cache_windows`` over ``properties.timeline_run``); ``compare`` says
where they differ and ``known`` which differences are already listed for the QEMU version.
``strategies`` generates cases with Hypothesis, ``shrink`` minimises a divergence, ``campaign`` runs
many cases on worker processes and ``report`` writes the findings.
"""
