"""Preparing data: image folders (ImageNet's layout) to sharded TFRecords and their statistics."""
