"""The error for a mistake on the command line."""


class UsageError(Exception):
    """A mistake of the user's, reported as one line with no traceback."""
