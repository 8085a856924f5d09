"""amdvi.frontend: what a person touches (the ``amdvi`` command, kernel-log reading, scenario files,
rendering, the generated reference) over the specification in ``amdvi.spec``, ``amdvi.models`` and
``amdvi.properties``, which never import it."""
