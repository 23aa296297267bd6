"""Tests for alexnet_tf.data.chunk_decode: how many records are decoded per chunk."""

from alexnet_tf.data import chunk_decode


def test_chunk_size_is_a_multiple_or_a_divisor_of_the_batch():
    assert chunk_decode.chunk_size(128) == 128
    assert chunk_decode.chunk_size(8) == 64 and chunk_decode.chunk_size(48) == 96
    assert chunk_decode.chunk_size(512) == 256 and chunk_decode.chunk_size(384) == 192
    assert chunk_decode.chunk_size(257) == 64  # a prime: no useful divisor
    assert chunk_decode.chunk_size(32, crops_per_record=10) == 16
