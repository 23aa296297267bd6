"""The network: AlexNet, ZFNet and the layers Keras lacks (LRN, grouped convolutions)."""
