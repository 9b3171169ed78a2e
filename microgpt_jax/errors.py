"""The one exception type that reaches users: a problem they can fix, said in one line."""

import sys
import unicodedata
from collections.abc import Callable

_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, format (bidi overrides), surrogates, line breaks


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
        print(f"error: {printable(str(e))}", file=sys.stderr)
        return 2


def printable(text: str) -> str:
    """``text`` safe to print on a terminal, one line: control and format characters (escape sequences, bidi
    overrides, newlines) escaped as ``\\xNN``/``\\uNNNN``; everything else, non-ASCII letters included, as is."""
    if text.isprintable():
        return text
    return "".join(repr(ch)[1:-1] if unicodedata.category(ch) in _UNSAFE else ch for ch in text)
