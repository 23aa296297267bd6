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


@pytest.mark.parametrize("arguments, line", [
    ([], "command.py: error: --input is required: The folder to read."),
    (["--count=many"], "command.py: error: flag --count=many: invalid literal for int()"),
    (["--input=/nonexistent/x"], "command.py: error: --input=/nonexistent/x does not exist: "
                                 "expected a folder holding images"),
    (["--input={file}"], "command.py: error: --input={file} is a file, not a folder: expected "
                         "a folder holding images"),
    (["--input={tmp}", "--output={file}/out"], "command.py: error: --output={file}/out is a "
                                               "file ({file} is), not a folder"),
    (["--input={tmp}", "extra"], "command.py: error: unexpected arguments: ['extra']"),
])
def test_run_command_reports_flag_and_folder_mistakes(tmp_path, arguments, line):
    script = tmp_path / "command.py"
    script.write_text(textwrap.dedent("""
        from absl import app
        from absl import flags
        from alexnet_tf import errors
        flags.DEFINE_string("input", None, "The folder to read.", required=True)
        flags.DEFINE_string("output", None, "Where to write.")
        flags.DEFINE_integer("count", 1, "How many.")
        def main(argv):
            if len(argv) > 1:
                raise app.UsageError(f"unexpected arguments: {argv[1:]}")
            errors.check_directory(flags.FLAGS.input, "--input", "images")
            if flags.FLAGS.output:
                errors.check_output_directory(flags.FLAGS.output, "--output")
        errors.run_command(main)
    """))
    values = dict(tmp=str(tmp_path), file=str(script))
    done = subprocess.run([sys.executable, str(script)] +
                          [argument.format(**values) for argument in arguments],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert line.format(**values) in lines[0]
