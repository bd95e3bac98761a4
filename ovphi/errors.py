"""The one error type ovphi raises for bad input: the CLI prints its message on one line and exits non-zero."""


class OvphiError(Exception):
    """A user-facing failure with a one-line message."""
