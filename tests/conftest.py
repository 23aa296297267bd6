"""Test setup: two logical CPU devices, made before TensorFlow initialises.

Multi-device code (MirroredStrategy, tower placement) is tested on /CPU:0 and /CPU:1.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
