"""The one exception type of the build library."""


class CoexError(Exception):
    """A user-facing failure: `str(err)` is the complete message (what is wrong, and how to fix
    it). Command lines print it and exit 1; nothing half-written is left behind by the raiser."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message
