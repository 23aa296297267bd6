"""Spreading training over devices and machines: strategies, the cluster, the tf.data service."""
