"""The ablation switches of alexnet_tf.nn.models and Figure 1's cnn4: the layers each
builds (shapes, parameter counts worked out by hand) and their round trip through
get_config, a .keras file and a run's model spec."""

import functools

import keras
import numpy as np
import pytest

from alexnet_tf import run_dir
from alexnet_tf.nn import cnn4
from alexnet_tf.nn import models
from alexnet_tf.training import config as config_lib

PAPER_PARAMETERS = 60_965_224  # the paper's two-tower net, 1000 classes


def conv(kernel, inputs, outputs):
    return kernel * kernel * inputs * outputs + outputs


def dense(inputs, outputs):
    return inputs * outputs + outputs


@functools.lru_cache(maxsize=None)
def full_model(**kwargs):
    return models.alexnet(**kwargs)


def images(batch, size, seed=0):
    return np.random.RandomState(seed).uniform(-120, 120, (batch, size, size, 3)).astype(
            np.float32)


def test_half_one_tower_is_the_papers_one_gpu_net():
    model = full_model(variant="half_one_tower")
    # conv1..conv4 halved, conv5 and the fc layers kept (section 3.2, footnote 2); no
    # convolution is grouped: one tower sees all of the previous layer's maps.
    expected = (conv(11, 3, 48) + conv(5, 48, 128) + conv(3, 128, 192) + conv(3, 192, 192)
                + conv(3, 192, 256) + dense(6 * 6 * 256, 4096) + dense(4096, 4096)
                + dense(4096, 1000))
    assert expected == 59_798_312
    assert model.count_params() == expected
    assert model.name == "alexnet_half_one_tower"
    for name, shape in (("conv2", (5, 5, 48, 128)), ("conv4", (3, 3, 192, 192)),
                        ("conv5", (3, 3, 192, 256))):
        layer = model.get_layer(name)
        assert type(layer) is keras.layers.Conv2D and tuple(layer.kernel.shape) == shape
    assert tuple(model.get_layer("norm2").output.shape[1:]) == (27, 27, 128)
    assert tuple(model.get_layer("pool5").output.shape[1:]) == (6, 6, 256)
    assert model.get_layer("norm1").groups == 1


def test_sixth_conv_sits_over_pool5_and_keeps_fc6():
    model = full_model(sixth_conv=True)
    layer = model.get_layer("conv6")
    assert model.count_params() == PAPER_PARAMETERS + conv(3, 256, 256)
    assert tuple(layer.kernel.shape) == (3, 3, 256, 256)
    assert layer.input.name == model.get_layer("pool5").output.name
    assert tuple(layer.output.shape[1:]) == (6, 6, 256)
    assert model.get_layer("fc6").input.shape[-1] == 6 * 6 * 256
    assert [layer.name for layer in model.layers].index("conv6") == (
            [layer.name for layer in model.layers].index("pool5") + 1)


@pytest.mark.parametrize("variant", ["paper", "half_one_tower", "one_tower"])
def test_non_overlapping_pooling_at_224_keeps_the_papers_sizes(variant):
    overlapping = full_model(variant=variant)
    model = full_model(variant=variant, pooling="non_overlapping")
    # From 55: (55 - 2) // 2 + 1 = 27, then 13, then 6, as (55 - 3) // 2 + 1 = 27 ...
    for name in ("pool1", "pool2", "pool5"):
        layer = model.get_layer(name)
        assert tuple(layer.pool_size) == (2, 2) and tuple(layer.strides) == (2, 2)
        assert layer.output.shape == overlapping.get_layer(name).output.shape
        assert tuple(overlapping.get_layer(name).pool_size) == (3, 3)
    assert model.count_params() == overlapping.count_params()


def test_non_overlapping_pooling_changes_fc6_where_the_sizes_differ():
    # 112 -> conv1 (112 + 3 - 11) // 4 + 1 = 27; overlapping 13, 6, 2; non-overlapping
    # 13, 6, 3. fc6 (width 2048 at x0.5) reads pool5's 2x2x128 or 3x3x128.
    small = dict(num_classes=10, input_size=112, width_multiplier=0.5)
    overlapping = models.alexnet(**small)
    model = models.alexnet(pooling="non_overlapping", **small)
    assert tuple(overlapping.get_layer("pool5").output.shape[1:]) == (2, 2, 128)
    assert tuple(model.get_layer("pool5").output.shape[1:]) == (3, 3, 128)
    assert tuple(model.get_layer("fc6").kernel.shape) == (3 * 3 * 128, 2048)
    assert (model.count_params() - overlapping.count_params()
            == (3 * 3 - 2 * 2) * 128 * 2048)
    assert model(images(2, 112)).shape == (2, 10)


def test_the_smallest_input_follows_the_pooling():
    # 40 -> conv1 (40 + 3 - 11) // 4 + 1 = 9; overlapping 4, 1, then empty; non-overlapping
    # 4, 2, 1. 32 -> conv1 7; 3, 1, then empty either way.
    with pytest.raises(ValueError, match="too small"):
        models.alexnet(input_size=40)
    model = models.alexnet(input_size=40, pooling="non_overlapping", num_classes=3,
                           width_multiplier=0.125)
    assert tuple(model.get_layer("pool5").output.shape[1:3]) == (1, 1)
    with pytest.raises(ValueError, match="too small"):
        models.alexnet(input_size=32, pooling="non_overlapping")
    with pytest.raises(ValueError, match="pooling must be one of"):
        models.alexnet(pooling="average")


@pytest.mark.parametrize("variant", ["paper", "half_one_tower", "one_tower"])
def test_tanh_reaches_every_hidden_layer_and_not_the_logits(variant):
    # init "zfnet": biases 0, so tanh's outputs take both signs (the paper's biases of 1
    # would put fc7's near tanh(1)).
    model = models.alexnet(variant=variant, activation="tanh", num_classes=5,
                           width_multiplier=0.125, input_size=67, sixth_conv=True,
                           init="zfnet")
    hidden = ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc6", "fc7"]
    for name in hidden:
        assert model.get_layer(name).get_config()["activation"] == "tanh", name
    assert model.get_layer("fc8").get_config()["activation"] in (None, "linear")
    # Every hidden unit is in (-1, 1): fc7's outputs, read through a sub-model.
    fc7 = keras.Model(model.inputs, model.get_layer("fc7").output)(images(4, 67)).numpy()
    assert np.all(np.abs(fc7) <= 1) and np.any(fc7 < 0)
    with pytest.raises(ValueError, match="activation must be one of"):
        models.alexnet(activation="sigmoid")


def test_switches_round_trip_through_get_config_and_a_keras_file(tmp_path):
    model = models.alexnet(num_classes=5, width_multiplier=0.125, input_size=67,
                           activation="tanh", pooling="non_overlapping", sixth_conv=True,
                           variant="half_one_tower", use_lrn=False, dropout_rate=0.0)
    x = images(2, 67)
    restored = keras.Model.from_config(model.get_config())
    restored.set_weights(model.get_weights())
    path = str(tmp_path / "switches.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for other in (restored, loaded):
        assert [layer.name for layer in other.layers] == [layer.name for layer in model.layers]
        assert other.get_layer("conv3").get_config()["activation"] == "tanh"
        assert tuple(other.get_layer("pool5").pool_size) == (2, 2)
        assert "norm1" not in [layer.name for layer in other.layers]
        np.testing.assert_allclose(other(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_run_config_records_a_switch_only_when_set_and_rebuilds_it():
    paper = config_lib.TrainConfig(data_dir="d", num_classes=5)
    assert not {"activation", "pooling", "sixth_conv"} & set(paper.model_spec())
    config = config_lib.TrainConfig(data_dir="d", num_classes=5, input_size=67,
                                    width_multiplier=0.125, activation="tanh",
                                    pooling="non_overlapping", sixth_conv=True,
                                    variant="half_one_tower", pca_std=0.0,
                                    eval_split="train")
    spec = config.model_spec()
    assert spec["activation"] == "tanh" and spec["pooling"] == "non_overlapping"
    assert spec["sixth_conv"] is True and spec["variant"] == "half_one_tower"
    assert config_lib.TrainConfig.from_dict(config.to_dict()) == config
    model = run_dir.build_model(spec)
    assert model.get_layer("conv6").get_config()["activation"] == "tanh"
    assert tuple(model.get_layer("pool1").pool_size) == (2, 2)


@pytest.mark.parametrize("settings, message", [
        (dict(model="zfnet", pooling="non_overlapping"), "pooling is an option of alexnet"),
        (dict(model="zfnet", sixth_conv=True), "sixth_conv is an option of alexnet"),
        (dict(model="zfnet", activation="tanh"), "activation is an option of alexnet and cnn4"),
        (dict(model="cnn4", dropout_rate=0.2), "dropout_rate is an option of alexnet and zfnet"),
        (dict(model="cnn4", use_lrn=False), "use_lrn is an option of alexnet and zfnet"),
        (dict(activation="sigmoid"), "activation must be one of"),
        (dict(pca_std=-0.1), "pca_std must be >= 0"),
        (dict(eval_split="test"), "eval_split must be one of"),
        (dict(variant="half_one_tower", tower_devices=("/CPU:0", "/CPU:1")),
         "tower_devices must name 2 devices and needs"),
])
def test_run_config_rejects_switches_the_network_lacks(settings, message):
    with pytest.raises(ValueError, match=message):
        config_lib.TrainConfig(data_dir="d", **settings)


def test_cnn4_layers_and_parameters():
    model = cnn4.cnn4()
    # 32 -> 16 -> 8 -> 4 ("same" pools); fc4 reads 4 * 4 * 64.
    expected = conv(5, 3, 32) + conv(5, 32, 32) + conv(5, 32, 64) + dense(4 * 4 * 64, 10)
    assert expected == 89_578 == model.count_params()
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes == {"images": (32, 32, 3), "conv1": (32, 32, 32), "pool1": (16, 16, 32),
                      "conv2": (16, 16, 32), "pool2": (8, 8, 32), "conv3": (8, 8, 64),
                      "pool3": (4, 4, 64), "flatten": (1024,), "fc4": (10,)}
    assert all(model.get_layer(f"conv{index}").get_config()["activation"] == "relu"
               for index in (1, 2, 3))


def test_cnn4_through_a_run_config_with_tanh():
    config = config_lib.TrainConfig(data_dir="d", model="cnn4", num_classes=3, input_size=16,
                                    activation="tanh", width_multiplier=0.5)
    spec = config.model_spec()
    assert spec == dict(name="cnn4", num_classes=3, input_size=16, width_multiplier=0.5,
                        activation="tanh")
    assert models.lrn_settings(spec) == {}
    model = run_dir.build_model(dict(spec, init="zfnet"))
    assert model.get_layer("conv1").get_config()["activation"] == "tanh"
    assert tuple(model.get_layer("conv3").kernel.shape) == (5, 5, 16, 32)
    assert model(images(2, 16)).shape == (2, 3)
    with pytest.raises(ValueError, match="input_size must be an integer >= 8"):
        cnn4.cnn4(input_size=4)


def test_layer_settings_name_the_widths_each_net_builds():
    # What `train --init_checkpoint` compares before copying weights.
    half = models.layer_settings({"name": "alexnet", "variant": "half_one_tower",
                                  "width_multiplier": 0.5})
    assert half == dict(model="alexnet", variant="half_one_tower",
                        widths=[24, 64, 96, 96, 128, 2048, 2048])
    built = models.alexnet(variant="half_one_tower", width_multiplier=0.5, input_size=67)
    assert [built.get_layer(f"conv{index}").kernel.shape[-1] for index in range(1, 6)] == (
            half["widths"][:5])
    assert models.layer_settings({"name": "cnn4", "width_multiplier": 0.5}) == dict(
            model="cnn4", widths=[16, 16, 32])
    assert models.layer_settings({"name": "alexnet", "activation": "tanh",
                                  "pooling": "non_overlapping"}) == models.layer_settings(
            {"name": "alexnet"})
