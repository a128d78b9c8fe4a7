"""The one exception type that the command line turns into a one-line message and exit code 2."""


class RestoreError(ValueError):
    """A problem with the user's input (file, option, shape or value), stated in one line."""
