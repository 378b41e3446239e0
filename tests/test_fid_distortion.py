"""FID (torchmetrics over our Inception, with locally made weights) grows with the distortion of one set."""

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from fvq_hf.evaluation.inception import InceptionV3Features


class First64(nn.Module):
    """The first 64 of the 2,048 pool features: the matrix square root of 64 × 64 covariances takes milliseconds,
    of 2,048 × 2,048 ones most of a minute on 2 cores; the statistic is the same. Random weights shrink the
    features to about 1e-8, so they are scaled by 1e8 (FID by 1e16) into the range of trained ones."""

    def __init__(self):
        super().__init__()
        self.inception = InceptionV3Features().eval()

    def forward(self, images):
        return self.inception(images)[:, :64] * 1e8


def test_fid_grows_with_noise():
    torch.manual_seed(0)
    real = torch.rand(6, 3, 1, 1).expand(6, 3, 32, 32) * 0.6 + 0.2 * torch.rand(6, 3, 32, 32)  # smooth photos
    fid = FrechetInceptionDistance(feature=First64(), reset_real_features=False)
    fid.update((real * 255).to(torch.uint8), real=True)
    scores = []
    for sigma in (0.05, 0.3):
        fid.reset()  # the fake set only
        fid.update(((real + sigma * torch.randn_like(real)).clamp(0, 1) * 255).to(torch.uint8), real=False)
        scores.append(float(fid.compute()))
    assert 1 < scores[0] and 10 * scores[0] < scores[1], scores
