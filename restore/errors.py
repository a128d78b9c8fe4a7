"""The one exception type that the command line turns into a one-line message and exit code 2."""


class RestoreError(ValueError):
    """A problem with the user's input (file, option, shape or value), stated in one line."""


class RestoreWarning(UserWarning):
    """Something the user should know that does not stop the command (an image read at less than its full
    depth); the command line prints it as one line on stderr."""
