"""--help texts say what the commands do."""

import pytest

from experiments.__main__ import main


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_keygen_bits_help_gives_default_and_one_time_ignoring_it(capsys):
    text = _help(capsys, "shufflebits", "keygen")
    assert "default: 32" in text
    assert "--one-time ignores it" in text
