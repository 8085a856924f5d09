"""amdvi: command line and trace I/O for the amdvi-spec executable specification."""
