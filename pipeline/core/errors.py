"""Errors a user can fix (bad params, a missing file); the CLI prints them without a traceback."""


class UserError(Exception):
    """A problem in the inputs or settings; the message says what to change."""

    exit_code = 1


class ParamsError(UserError, ValueError):
    """params.yaml does not match the schema; the message lists every problem."""

    exit_code = 2
