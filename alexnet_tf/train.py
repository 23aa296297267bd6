r"""Trains AlexNet (or ZFNet): `python -m alexnet_tf.train --flagfile=flags/alexnet.cfg`.

Every flag is a field of `alexnet_tf.training.config.TrainConfig`, whose defaults are
the paper's recipe (help and choices live there too); `--flagfile` works and later
flags override it:

  python -m alexnet_tf.train --flagfile=flags/alexnet.cfg --data_dir=/data/imagenet \
      --model_dir=runs/alexnet --strategy=mirrored

A rerun with the same --model_dir resumes from its latest checkpoint. Exit status: 0 when
done, 143 after a SIGTERM (a checkpoint was saved: rerun to continue), 2 on a mistake in
the input, reported in one line naming it (a missing or wrong flag, folder or file, data
that cannot be read: a damaged shard or a bad record, which --skip_bad_records skips,
or shards that differ from the converter's manifest), 1 on a NaN or Inf loss or weights.
"""

from alexnet_tf import startup  # First: quiets TensorFlow's start-up notices.

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from alexnet_tf import errors  # noqa: E402
from alexnet_tf import train_flags  # noqa: E402

def config_from_flags(values=flags.FLAGS):
    """The validated TrainConfig of the parsed command line."""
    return train_flags.config_from_flags(values)


def main(argv):
    if len(argv) > 1:
        raise errors.InvalidInputError(f"unexpected arguments: {argv[1:]}")
    startup.tune_malloc()  # Reuse large buffers between steps (see startup.py).
    config = config_from_flags()
    model_dir = flags.FLAGS.model_dir
    errors.check_output_directory(model_dir, "--model_dir")
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
        results = loop.train_and_evaluate(config, model_dir)
    except loop.NonFiniteLossError as error:
        logging.error("%s", error)
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
    errors.run_command(main)
