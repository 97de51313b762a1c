"""The one exception type that command-line entry points turn into a one-sentence message."""


class LdiffError(Exception):
    """A problem with the user's input or environment, explained in one sentence.

    Command-line entry points print the message (without a traceback) and exit with status 1.
    """
