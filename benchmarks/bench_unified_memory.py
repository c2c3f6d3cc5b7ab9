"""Peak RSS and wall time of PatchCore.fit at the study's unified size.

728 training images (312 + 224 + 192, the study's three train splits pooled) of ResNet-50
layer2/layer3 shape: 728 x 784 = 570,752 patches x 1536 dims (3.5 GB if held in fp32).
Features are synthesised batch by batch from seeds (the backbone is not what is measured),
so the source is re-iterable like the on-disk feature cache.  Target: peak RSS < 4 GiB.

Run: ``.venv/bin/python benchmarks/bench_unified_memory.py [--images 728] [--threads 1]``
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from ad_core.models import PatchCore


class SyntheticFeatures:
    """Re-iterable batches of ResNet-50-shaped feature maps, identical on every pass."""

    def __init__(self, n_images: int, batch: int = 16):
        self.n_images, self.batch = n_images, batch

    def __iter__(self):
        for i, lo in enumerate(range(0, self.n_images, self.batch)):
            b = min(self.batch, self.n_images - lo)
            g = torch.Generator().manual_seed(i)
            yield {"layer2": torch.randn(b, 512, 28, 28, generator=g).abs_(),
                   "layer3": torch.randn(b, 1024, 14, 14, generator=g).abs_()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=728)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = PatchCore(progress=True).fit(SyntheticFeatures(args.images))
    wall = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    n = model.n_train_patches_
    print(f"images {args.images}  patches {n} x 1536 (fp32 would be {n * 1536 * 4 / 2**30:.2f} GiB)")
    print(f"memory bank {model.memory_bank_.shape}  fit {wall:.0f} s  threads {args.threads}")
    print(f"peak RSS {peak_gib:.2f} GiB (target < 4 GiB)")


if __name__ == "__main__":
    main()
