"""Data: the record schema, colour statistics, preprocessing and the tf.data pipeline."""
