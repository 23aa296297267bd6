"""alexnet_tf: a Keras/TensorFlow 2 reference implementation of AlexNet.

Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012.
"""

__version__ = "0.1.0"
