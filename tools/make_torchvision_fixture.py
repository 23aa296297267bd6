r"""Writes the small torchvision-AlexNet fixture of tests/pretrained/, with PyTorch.

  /work/torchvenv/bin/python tools/make_torchvision_fixture.py --output_dir=tests/pretrained/data

Run once, by an interpreter that has torch (the project itself never needs torch); its
output is checked in. It builds a torch.nn module laid out exactly as
torchvision.models.AlexNet (features.0/3/6/8/10 convolutions with their ReLUs and max
pools, an adaptive average pool to 6x6, classifier.1/4/6 with dropout), with small
widths so the files stay small, seeded random weights, and writes

  alexnet_owt_tiny.pth          torch.save(state_dict): the zip format
  alexnet_owt_tiny_legacy.pth   the same state dict in torch.save's legacy format
  alexnet_owt_tiny_logits.npz   torch's logits (eval mode) for `fixture_images()`,
                                normalised as torchvision's transforms do, and a
                                checksum of those images

The importer must reproduce those logits from the .pth files alone.
"""

import argparse
import os

import numpy as np

# Widths conv1..conv5, fc6, fc7: torchvision's 64-192-384-256-256-4096-4096, shrunk.
WIDTHS = (6, 8, 10, 8, 6, 8, 8)
NUM_CLASSES = 1000
INPUT_SIZE = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SEED = 17


def fixture_images() -> np.ndarray:
    """The images the logits are for: uint8 (2, 224, 224, 3) RGB, from a fixed seed."""
    return np.random.default_rng(SEED).integers(0, 256, (2, INPUT_SIZE, INPUT_SIZE, 3),
                                                dtype=np.uint8)


def images_checksum(images: np.ndarray) -> np.ndarray:
    """A fingerprint of the images, so a reader can tell it regenerated the same ones."""
    flat = images.reshape(-1).astype(np.int64)
    return np.array([flat.sum(), (flat * np.arange(flat.size) % 65521).sum()], np.int64)


def torchvision_alexnet(widths, num_classes):
    """torchvision.models.AlexNet's module structure, with the given widths."""
    from torch import nn
    features = nn.Sequential(
            nn.Conv2d(3, widths[0], 11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(widths[0], widths[1], 5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(widths[1], widths[2], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(widths[2], widths[3], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(widths[3], widths[4], 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2))
    classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(widths[4] * 6 * 6, widths[5]), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(widths[5], widths[6]), nn.ReLU(inplace=True),
            nn.Linear(widths[6], num_classes))

    class AlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = features
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = classifier

        def forward(self, x):
            x = self.avgpool(self.features(x))
            return self.classifier(x.flatten(1))

    return AlexNet()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args()
    import torch
    torch.manual_seed(SEED)
    model = torchvision_alexnet(WIDTHS, NUM_CLASSES).eval()
    # He-scaled weights keep each layer's output on the scale of its input, so the logits
    # vary with the image (PyTorch's default start gives nearly one output for all).
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
                module.bias.uniform_(-0.1, 0.1)
    images = fixture_images()
    inputs = (torch.from_numpy(images).float().permute(0, 3, 1, 2) / 255.0
              - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model(inputs).numpy()
    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "alexnet_owt_tiny")
    torch.save(model.state_dict(), path + ".pth")
    torch.save(model.state_dict(), path + "_legacy.pth", _use_new_zipfile_serialization=False)
    np.savez(path + "_logits.npz", logits=logits.astype(np.float32),
             images_checksum=images_checksum(images), widths=np.array(WIDTHS))
    for suffix in (".pth", "_legacy.pth", "_logits.npz"):
        print(f"wrote {path + suffix} ({os.path.getsize(path + suffix)} bytes)")


if __name__ == "__main__":
    main()
