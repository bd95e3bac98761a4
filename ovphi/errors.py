"""The one error type ovphi raises for bad input (the CLI prints its message on one line and exits non-zero),
and the one warning type (one line on stderr)."""


class OvphiError(Exception):
    """A user-facing failure with a one-line message."""


class OvphiWarning(UserWarning):
    """Something the user should know that does not stop the run."""
