"""Serving: the SavedModel's signatures, its warm-up requests and versioned export."""
