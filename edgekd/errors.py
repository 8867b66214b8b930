"""One exception type for bad user input, so the CLI can turn it into one line and exit code 2."""


class EdgekdError(Exception):
    """A problem with what the user gave us (a file, a flag, a budget); the message says what to do."""

    exit_code = 2
