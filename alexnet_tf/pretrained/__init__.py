"""Published AlexNet weights (Caffe's bvlc_alexnet, torchvision's) as this project's models."""
