"""The one exception type that reaches users: a problem they can fix, said in one line."""


class UserError(ValueError):
    """A bad input (file, flag, config) described in one line that names the problem and the fix.

    The CLI prints it as ``error: <message>`` and exits with status 2, never a traceback.
    """
