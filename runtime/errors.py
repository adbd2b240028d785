"""User-facing errors: each names the problem and the fix."""


class UserError(Exception):
    """Bad input from the user. The CLI prints the message (no traceback) and exits 2."""
