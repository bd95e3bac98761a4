"""The one error type ovphi raises for bad input: the CLI prints its message on one line and exits non-zero."""


class OvphiError(Exception):
    """A user-facing failure with a one-line message."""


class PromptTooLong(OvphiError):
    """The prompt does not fit the model's context."""
