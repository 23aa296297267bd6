"""Argument checks and the registration package shared by alexnet_tf's Keras layers."""

import numpy as np

PACKAGE = "alexnet_tf"  # Keras registration package of every alexnet_tf layer.
# The hidden-layer non-linearities the builders offer: the paper's ReLU (section 3.1) and
# the saturating tanh it is compared with (Figure 1).
ACTIVATIONS = ("relu", "tanh")


def check_devices(devices, groups: int, layer_name: str):
    """Returns `devices` as a tuple of strings (or None) after checking its length."""
    if devices is None:
        return None
    if isinstance(devices, str) or len(devices) != groups:
        raise ValueError(f"{layer_name}: devices must be a list of {groups} device names (one per "
                         f"group), received {devices!r}")
    return tuple(str(device) for device in devices)


def positive_int(value, name: str, layer_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{layer_name}: {name} must be an integer >= 1, received {value!r}")
    return int(value)
