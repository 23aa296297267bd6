"""The network's compute precision: the names commands accept and Keras' policy for each.

Variables always stay float32; "mixed_*" computes in float16 or bfloat16 and keeps the
logits float32 (see `models`). float16 training also needs loss scaling, which the
trainer adds (`keras.optimizers.LossScaleOptimizer`); bfloat16 does not.
"""

import contextlib

import keras

# Command-line name -> Keras dtype policy.
POLICIES = {"fp32": "float32", "mixed_float16": "mixed_float16",
            "mixed_bfloat16": "mixed_bfloat16"}
PRECISIONS = tuple(POLICIES)


@contextlib.contextmanager
def dtype_policy(precision: str):
    """Sets Keras' global dtype policy for `precision`, and restores the previous one after.

    Raises:
      ValueError: `precision` is not one of PRECISIONS.
    """
    if precision not in POLICIES:
        raise ValueError(f"precision must be one of {PRECISIONS}, received {precision!r}")
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
