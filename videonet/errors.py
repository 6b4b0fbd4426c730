"""One exception type for mistakes a user can fix; the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """Bad input or a missing resource, described in one line that says what to do."""
