"""UserError and exit_status: a problem the user can fix is one line on stderr and status 2, never a traceback."""

from __future__ import annotations

import pytest

from microgpt_jax.errors import UserError, exit_status


def test_a_user_error_is_a_value_error() -> None:
    # callers that catch ValueError (argparse's type functions, the CLI's checks) catch it too
    assert issubclass(UserError, ValueError)
    assert str(UserError("lr must be > 0: pass --lr 0.01")) == "lr must be > 0: pass --lr 0.01"


def test_exit_status_passes_the_status_through(capsys) -> None:
    assert exit_status(lambda: 0) == 0
    assert exit_status(lambda: 3) == 3
    assert capsys.readouterr() == ("", "")


def test_exit_status_prints_a_user_error_as_one_line_and_returns_2(capsys) -> None:
    def main() -> int:
        raise UserError("data file x.txt not found: pass --data PATH")

    assert exit_status(main) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "error: data file x.txt not found: pass --data PATH\n"


def test_exit_status_lets_other_errors_through() -> None:
    def main() -> int:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        exit_status(main)
