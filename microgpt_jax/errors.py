"""The one exception type that reaches users: a problem they can fix, said in one line."""

import sys
from collections.abc import Callable


class UserError(ValueError):
    """A bad input (file, flag, config) described in one line that names the problem and the fix.

    The CLI prints it as ``error: <message>`` and exits with status 2, never a traceback.
    """


def exit_status(main: Callable[[], int]) -> int:
    """Run a script's ``main()`` and return its exit status; a UserError is printed as ``error: <message>`` on
    stderr with status 2, never a traceback (the experiments' scripts use it as the CLI does)."""
    try:
        return main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
