"""The one error type ovphi raises for bad input: the CLI prints its message on one line and exits non-zero."""


class OvphiError(Exception):
    """A user-facing failure with a one-line message."""


class Unsupported(OvphiError):
    """A GenerationConfig field (`field`) asks for what the engine cannot do."""

    def __init__(self, message, field):
        super().__init__(message)
        self.field = field


class PromptTooLong(OvphiError):
    """The prompt does not fit the model's context."""
