"""The paper's experiments re-run as sets of ordinary training runs (`alexnet_tf.experiments`)."""
