"""Tests for the visualize command (alexnet_tf.visualize): flags, sub-commands, errors."""

import subprocess
import sys

import pytest

_COMMAND_LINE_SCRIPT = """
import sys
from absl import app
from absl import flags
import pytest
from alexnet_tf import errors
from alexnet_tf import visualize

model_dir, output, shard, tmp = sys.argv[1:5]
flags.FLAGS(["visualize", f"--model_dir={model_dir}", f"--output={output}",
             f"--images={shard}", "--layer=conv2", "--num_maps=2",
             "--num_per_map=1", "--max_images=3"])
visualize.main(["visualize", "deconv"])
with pytest.raises(app.UsageError, match="kernels, predictions"):
    visualize.main(["visualize", "sketch"])
flags.FLAGS.output = tmp + "/out.jpg"
with pytest.raises(app.UsageError, match="png"):
    visualize.main(["visualize", "kernels"])
visualize.main(["visualize", "receptive_fields"])  # A table on stdout: no PNG needed.
flags.FLAGS.output = output
flags.FLAGS.images = []
with pytest.raises(app.UsageError, match="needs images"):
    visualize.main(["visualize", "occlusion"])
flags.FLAGS.images = [tmp + "/missing.jpg"]
with pytest.raises(errors.MissingInputError, match="missing.jpg"):
    visualize.main(["visualize", "predictions"])
print("COMMAND LINE OK")
"""


@pytest.mark.slow
def test_command_line(viz_run, check_png, tmp_path):
    # main() with parsed flags: the same code `python -m alexnet_tf.visualize` runs. In a
    # child process because absl flags are global: the entry points train.py and
    # visualize.py both define --model_dir, and other tests import train.py.
    output = str(tmp_path / "cli_deconv.png")
    result = subprocess.run(
        [sys.executable, "-c", _COMMAND_LINE_SCRIPT, viz_run["model_dir"], output, viz_run["shard"],
         str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "COMMAND LINE OK" in result.stdout
    # The run's net (67x67 input): pool1 is 7x7, its field 19 wide, jump 8, start 0.
    assert ["pool1", "7x7", "3/2", "19", "8", "0", "9"] in [
        line.split() for line in result.stdout.splitlines()]
    check_png(output)
