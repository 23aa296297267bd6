"""Tests for alexnet_tf.data.preprocessing: crops, flips, PCA lighting, mean, 10 crops, eager ==
tf.data."""

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data import preprocessing

# Small sizes keep the tests fast; one test checks the paper's 224/256.
CROP, RESIZE = 24, 32


def seed_of(i):
    return tf.constant([7, i], tf.int64)


def expected_crop(frame, offset, flipped, crop=CROP):
    window = frame[offset[0]:offset[0] + crop, offset[1]:offset[1] + crop]
    return window[:, ::-1] if flipped else window


@pytest.mark.parametrize("height,width", [(RESIZE, RESIZE), (RESIZE, 45)])
def test_train_crop_jpeg_window_is_exact_crop_of_canonical_frame(height, width, encode_image,
                                                                  random_image):
    jpeg = encode_image(random_image(height, width), "JPEG", quality=95)
    full = tf.io.decode_jpeg(jpeg).numpy()
    origin = (width - RESIZE) // 2
    frame = full[:, origin:origin + RESIZE]
    for i in range(8):
        crop = preprocessing.train_crop(jpeg, seed_of(i), crop_size=CROP, resize_size=RESIZE)
        offset = crop["offset"].numpy()
        assert crop["image"].shape == (CROP, CROP, 3) and crop["image"].dtype == tf.uint8
        assert 0 <= offset.min() and offset.max() <= RESIZE - CROP
        image = crop["image"].numpy().astype(int)
        # The crop comes back unmirrored whatever its flip flag: the float stage mirrors.
        expected = expected_crop(frame, offset, False).astype(int)
        # Decoding only the window upsamples chroma at the window's edges from inside the
        # window (libjpeg), so the outer rows/columns may differ slightly; the rest is exact.
        np.testing.assert_array_equal(image[1:-1, 1:-1], expected[1:-1, 1:-1])
        assert np.abs(image - expected).mean() < 1.0


def test_train_crop_resizes_other_sizes_and_formats(encode_image, random_image):
    array = random_image(50, 70)
    resized = preprocessing.resize_shorter_side(tf.constant(array), RESIZE).numpy()
    assert resized.shape == (RESIZE, round(70 * RESIZE / 50), 3)
    origin = (resized.shape[1] - RESIZE) // 2
    frame = resized[:, origin:origin + RESIZE]
    crop = preprocessing.train_crop(encode_image(array, "PNG"), seed_of(3), crop_size=CROP,
                                    resize_size=RESIZE)
    np.testing.assert_array_equal(
            crop["image"].numpy(), expected_crop(frame, crop["offset"].numpy(), False))


def test_flip_is_identity_or_mirror_and_both_happen(encode_image, random_image, make_stats):
    png = encode_image(random_image(RESIZE, RESIZE), "PNG")
    kwargs = dict(stats=make_stats(), crop_size=CROP, resize_size=RESIZE, mean_mode="rgb",
                  pca_std=0.0)
    flips = []
    for i in range(24):
        unflipped = preprocessing.preprocess_for_train(png, seed_of(i), flip=False, **kwargs)
        maybe = preprocessing.preprocess_for_train(png, seed_of(i), **kwargs).numpy()
        drawn = preprocessing.train_crop(png, seed_of(i), crop_size=CROP, resize_size=RESIZE)
        assert not preprocessing.train_crop(png, seed_of(i), crop_size=CROP, resize_size=RESIZE,
                                            flip=False)["flip"]
        reference = unflipped.numpy()
        if drawn["flip"]:
            reference = reference[:, ::-1]
        np.testing.assert_array_equal(maybe, reference)
        flips.append(bool(drawn["flip"]))
    assert 4 <= sum(flips) <= 20, flips


def test_pca_lighting_covariance_matches_request(encode_image, make_stats):
    stats = make_stats()
    pca_std, num_draws = 0.1, 4000
    png = encode_image(np.zeros((8, 8, 3), np.uint8), "PNG")
    dataset = tf.data.Dataset.range(num_draws).map(
            lambda i: preprocessing.train_crop(png, tf.stack([tf.constant(1, tf.int64), i]),
                                               crop_size=2, resize_size=8, pca_std=pca_std))
    batch = next(iter(dataset.batch(num_draws)))
    zeros = tf.zeros([num_draws, 2, 2, 3], tf.uint8)
    shift = preprocessing.float_augment_batch(
            zeros, batch["offset"], batch["flip"], batch["alpha"], stats=stats,
            mean_mode="rgb", resize_size=8).numpy() + stats.mean_rgb
    # One shift per image: every pixel of a crop moves by the same RGB vector.
    np.testing.assert_allclose(shift[:, 0, 0], shift[:, 1, 1], atol=1e-4)
    scaled = stats.eigvec * (pca_std * stats.eigval)
    expected_cov = scaled @ scaled.T
    measured_cov = np.cov(shift[:, 0, 0].T)
    np.testing.assert_allclose(measured_cov, expected_cov, rtol=0.1, atol=0.02 * expected_cov.max())
    np.testing.assert_allclose(shift[:, 0, 0].mean(0), 0, atol=4 * np.sqrt(expected_cov.max() / num_draws))


def test_train_draws_of_a_run_of_seeds_equal_each_drawn_alone():
    kwargs = dict(crop_size=CROP, resize_size=RESIZE, pca_std=0.1)
    together = preprocessing.train_draws(tf.constant([7, 40], tf.int64), 9, **kwargs)
    offsets = together["offset"].numpy()
    assert offsets.shape == (9, 2) and 0 <= offsets.min() and offsets.max() <= RESIZE - CROP
    for i in range(9):
        alone = preprocessing.train_draws(tf.constant([7, 40 + i], tf.int64), 1, **kwargs)
        for key in ("offset", "flip", "alpha"):
            np.testing.assert_array_equal(together[key][i], alone[key][0])
    # Another key gives other draws; every offset and both flips occur over many seeds.
    other = preprocessing.train_draws(tf.constant([8, 40], tf.int64), 9, **kwargs)
    assert not np.array_equal(other["alpha"], together["alpha"])
    many = preprocessing.train_draws(tf.constant([1, 0], tf.int64), 2000, **kwargs)
    assert set(many["offset"].numpy().ravel()) == set(range(RESIZE - CROP + 1))
    assert 0.45 < many["flip"].numpy().mean() < 0.55
    assert np.isfinite(many["alpha"].numpy()).all()


def test_mean_subtraction_rgb_and_image(encode_image, random_image, make_stats):
    array = random_image(RESIZE, RESIZE, seed=1)
    mean_image = np.random.default_rng(2).uniform(0, 255, (RESIZE, RESIZE, 3)).astype(np.float32)
    png = encode_image(array, "PNG")
    for mean_mode, stats in (("rgb", make_stats()), ("image", make_stats(mean_image))):
        for i in range(6):
            out = preprocessing.preprocess_for_train(png, seed_of(i), stats=stats, crop_size=CROP,
                                                     mean_mode=mean_mode, pca_std=0.0,
                                                     resize_size=RESIZE).numpy()
            crop = preprocessing.train_crop(png, seed_of(i), crop_size=CROP, resize_size=RESIZE)
            offset, flipped = crop["offset"].numpy(), bool(crop["flip"])
            image = expected_crop(array, offset, flipped).astype(np.float32)
            mean = (stats.mean_rgb if mean_mode == "rgb"
                    else expected_crop(mean_image, offset, flipped))
            np.testing.assert_allclose(out, image - mean, atol=1e-4)


def test_ten_crops_are_corners_centre_and_mirrors(encode_image, random_image, make_stats):
    array = random_image(RESIZE, RESIZE, seed=3)
    stats = make_stats()
    crops = preprocessing.preprocess_for_eval(encode_image(array, "PNG"), stats=stats,
                                              crop_size=CROP,
                                              resize_size=RESIZE, ten_crop=True).numpy()
    assert crops.shape == (10, CROP, CROP, 3)
    far, mid = RESIZE - CROP, (RESIZE - CROP) // 2
    corners = [(mid, mid), (0, 0), (0, far), (far, 0), (far, far)]
    expected = [expected_crop(array, c, False) for c in corners]
    expected += [e[:, ::-1] for e in expected]
    np.testing.assert_allclose(crops + stats.mean_rgb, np.stack(expected).astype(np.float32),
                               atol=1e-4)


def test_eval_any_size_and_paper_sizes(encode_image, random_image, make_stats):
    stats = make_stats()
    array = random_image(256, 256, seed=4)
    out = preprocessing.preprocess_for_eval(encode_image(array, "PNG"), stats=stats).numpy()
    assert out.shape == (224, 224, 3)
    np.testing.assert_allclose(out + stats.mean_rgb, array[16:240, 16:240], atol=1e-4)
    big = preprocessing.preprocess_for_eval(
            encode_image(random_image(300, 500), "JPEG", quality=95), stats=stats)
    assert big.shape == (224, 224, 3)
    small = preprocessing.preprocess_for_eval(encode_image(random_image(20, 30), "PNG"),
                                              stats=stats)
    assert small.shape == (224, 224, 3)


def test_eager_equals_tf_data(encode_image, random_image, make_stats):
    stats = make_stats(np.full((RESIZE, RESIZE, 3), 100.0, np.float32))
    images = [encode_image(random_image(RESIZE, RESIZE, seed=s), "JPEG", quality=95)
              for s in range(4)]
    train = dict(stats=stats, crop_size=CROP, resize_size=RESIZE)
    evaluate = dict(stats=stats, crop_size=CROP, resize_size=RESIZE, ten_crop=True)
    dataset = tf.data.Dataset.from_tensor_slices(images).enumerate().map(
            lambda i, image: (preprocessing.preprocess_for_train(image, tf.stack([7, i]), **train),
                              preprocessing.preprocess_for_eval(image, **evaluate)))
    for i, (train_out, eval_out) in enumerate(dataset):
        eager_train = preprocessing.preprocess_for_train(images[i], seed_of(i), **train)
        np.testing.assert_array_equal(train_out.numpy(), eager_train.numpy())
        np.testing.assert_array_equal(eval_out.numpy(),
                                      preprocessing.preprocess_for_eval(images[i], **evaluate))


def test_device_augment_matches_host_and_seed_repeats(encode_image, random_image, make_stats):
    stats = make_stats(np.random.default_rng(5).uniform(0, 255, (RESIZE, RESIZE, 3)))
    png = encode_image(random_image(RESIZE, RESIZE, seed=6), "PNG")
    kwargs = dict(stats=stats, crop_size=CROP, resize_size=RESIZE)
    crops = [preprocessing.preprocess_for_train(png, seed_of(i), augment_on_device=True, **kwargs)
             for i in range(4)]
    batch = {key: tf.stack([c[key] for c in crops]) for key in crops[0]}
    on_device = preprocessing.device_augment(batch, stats=stats, resize_size=RESIZE).numpy()
    for i in range(4):
        host = preprocessing.preprocess_for_train(png, seed_of(i), **kwargs).numpy()
        np.testing.assert_allclose(on_device[i], host, atol=1e-4)
    different = preprocessing.preprocess_for_train(png, seed_of(99), **kwargs).numpy()
    assert not np.array_equal(different, on_device[0])


def test_bad_arguments_raise_clear_errors(encode_image, random_image, make_stats):
    png = encode_image(random_image(RESIZE, RESIZE), "PNG")
    with pytest.raises(ValueError, match="mean_mode"):
        preprocessing.preprocess_for_train(png, seed_of(0), stats=make_stats(), mean_mode="bgr",
                                           crop_size=CROP, resize_size=RESIZE)
    with pytest.raises(ValueError, match="crop_size"):
        preprocessing.preprocess_for_eval(png, stats=make_stats(), crop_size=40, resize_size=32)
    with pytest.raises(tf.errors.InvalidArgumentError):
        preprocessing.preprocess_for_eval(b"not an image", stats=make_stats())
