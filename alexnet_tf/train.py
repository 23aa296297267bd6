r"""Trains AlexNet (or ZFNet): `python -m alexnet_tf.train --flagfile=flags/alexnet.cfg`.

Every flag is a field of `alexnet_tf.training.config.TrainConfig`, whose defaults are
the paper's recipe (help and choices live there too); `--flagfile` works and later
flags override it:

  python -m alexnet_tf.train --flagfile=flags/alexnet.cfg --data_dir=/data/imagenet \
      --model_dir=runs/alexnet --strategy=mirrored

A rerun with the same --model_dir resumes from its latest checkpoint. Exit status: 0 when
done, 143 after a SIGTERM (a checkpoint was saved: rerun to continue), 2 on data that
cannot be read (a damaged shard or a bad record, named; --skip_bad_records skips them),
1 on a NaN loss or a bad setting.
"""

from alexnet_tf import startup  # First: quiets TensorFlow's start-up notices.

import sys  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from alexnet_tf import errors  # noqa: E402
from alexnet_tf import train_flags  # noqa: E402

def config_from_flags(values=flags.FLAGS):
    """The validated TrainConfig of the parsed command line."""
    return train_flags.config_from_flags(values)


def main(argv):
    del argv  # Unused.
    startup.tune_malloc()  # Reuse large buffers between steps (see startup.py).
    try:
        config = config_from_flags()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if config.deterministic:
        import tensorflow as tf  # Process-wide: set here, before any op runs.
        tf.config.experimental.enable_op_determinism()
    from alexnet_tf.training import loop
    if config.make_demo_data:
        from alexnet_tf.data.imagenet import demo
        if demo.prepare_records(config.data_dir, config.demo_dir, resize=config.resize_size,
                                seed=config.seed, show_progress=config.progress_bar):
            logging.info("Demo images in %s converted into %s", config.demo_dir,
                         config.data_dir)
    try:
        results = loop.train_and_evaluate(config, flags.FLAGS.model_dir)
    except loop.NonFiniteLossError as error:
        logging.error("%s", error)
        return 1
    except errors.UsageError as error:  # e.g. a damaged shard, named in one line
        return errors.report(error)
    except (ValueError, FileNotFoundError) as error:  # A bad setting or missing data.
        print(f"error: {error}", file=sys.stderr)
        return 1
    if results["preempted"]:
        print(f"Stopped by SIGTERM at step {results['step']}; checkpoint saved in "
              f"{flags.FLAGS.model_dir}. Rerun the same command to continue.")
        return 143
    print(f"step {results['step']}: validation top-1 error {results['top1_error']:.4f} "
          f"(accuracy {1 - results['top1_error']:.2%}), top-5 error "
          f"{results['top5_error']:.4f} on {results['num_examples']} images")
    print(f"model_dir: {flags.FLAGS.model_dir}  (export: python -m alexnet_tf.export "
          f"--model_dir={flags.FLAGS.model_dir} --export_dir=...)")
    return 0


train_flags.define_flags(flags.FLAGS)
flags.mark_flag_as_required("model_dir")

if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
