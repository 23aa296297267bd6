"""A UsageError anywhere below a command's main is one line on stderr and exit status 2."""

import subprocess
import sys
import textwrap

import pytest

from alexnet_tf import errors


def test_usage_errors_are_the_builtin_exceptions_callers_expect():
    assert isinstance(errors.InvalidInputError("x"), ValueError)
    assert isinstance(errors.MissingInputError("x"), FileNotFoundError)
    assert isinstance(errors.ExistingOutputError("x"), FileExistsError)
    assert errors.one_line(ValueError("a\n  b")) == "a b"


@pytest.mark.parametrize("body, status, line", [
    ("raise errors.MissingInputError('--data_dir=/x does not exist: expected a folder')",
     2, "error: --data_dir=/x does not exist: expected a folder"),
    ("return 3", 3, None),
    ("raise RuntimeError('a bug')", 1, "Traceback"),
])
def test_run_command_exit_status_and_message(tmp_path, body, status, line):
    script = tmp_path / "command.py"
    script.write_text(textwrap.dedent(f"""
        from alexnet_tf import errors
        def main(argv):
            {body}
        errors.run_command(main)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == status
    if line:
        assert line in done.stderr
    if status == 2:
        assert len(done.stderr.strip().splitlines()) == 1
