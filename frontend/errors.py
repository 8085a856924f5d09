"""The one error type the command line turns into a one-line message and exit code 2."""


class InputError(ValueError):
    """Bad input from the user: malformed hex, unknown name, unreadable file, bad trace."""
