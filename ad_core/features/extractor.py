"""One extractor for every backbone: named intermediate maps, frozen, batched, no grad."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ad_core import SEED
from ad_core.features.backbones import BACKBONES, build_backbone
from ad_core.timing import phase


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def at_least_two_threads(device: torch.device) -> Iterator[None]:
    """On a CPU, run inside with >= 2 intra-op threads (restored after).

    oneDNN picks other convolution kernels for one thread and a batch below ~16, and they sum in
    another order: the maps moved by up to ~5e-5 between ``--threads 1`` and 2 (and between a
    1-thread Dask worker and the client).  With 2, 4 (and, measured, any batch size) the maps are
    bit-identical, so the features no longer depend on the thread count (tests/test_features.py).
    """
    before = torch.get_num_threads()
    if device.type != "cpu" or before >= 2:
        yield
        return
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class FeatureExtractor:
    """Maps images (N, 3, H, W) to ``{layer: (N, C, h, w)}`` for the requested layers.

    Runs the backbone only up to the deepest requested layer.  ``weights_source`` records
    where the weights came from.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        weights: str | None = None,
        device: str | torch.device = "auto",
        batch_size: int = 16,
        seed: int = SEED,
    ):
        stages, self.weights_source = build_backbone(backbone, weights, seed)
        names = [n for n, _ in stages]
        unknown = [layer for layer in layers if layer not in names]
        if unknown:
            raise ValueError(f"{backbone} has no layer(s) {unknown}; available: {names}")
        last = max(names.index(layer) for layer in layers)
        self.backbone = backbone
        self.layers = tuple(layers)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.stages = nn.ModuleList([m for _, m in stages[: last + 1]]).to(self.device).eval()
        # channels-last on a CPU: oneDNN's convolutions (depthwise ones above all) run faster in
        # NHWC -- EfficientNet-Lite0 at 224^2 on 2 cores: 11 ms an image against 20 ms in NCHW;
        # the maps differ by ~2e-6 of their range (float32 summation order)
        self._memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.stages = self.stages.to(memory_format=self._memory_format)
        self._names = names[: last + 1]

    def channels(self) -> dict[str, int]:
        return {layer: BACKBONES[self.backbone].channels[layer] for layer in self.layers}

    @torch.no_grad()
    @phase("backbone")
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps of one batch, on the extractor's device, float32."""
        x = images.to(self.device, non_blocking=True).contiguous(memory_format=self._memory_format)
        out: dict[str, torch.Tensor] = {}
        with at_least_two_threads(self.device):
            for name, stage in zip(self._names, self.stages):
                x = stage(x)
                if name in self.layers:
                    out[name] = x.contiguous()  # callers get ordinary NCHW tensors
        return out

    def batches(self, dataset: Dataset, progress: bool = True, desc: str = "features",
                num_workers: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Feature maps of ``dataset`` (items with an ``image`` key) batch by batch, on CPU.

        A partial last batch is padded with zero images to ``batch_size``: oneDNN picks its
        convolution kernels by the batch's shape, and below 224 px a batch of 1 or 3 gave maps that
        differ in the last bits from the same image's in a batch of 16.  Padded, an image's maps do
        not depend on which images it was extracted with (a split, a resumed run, a recomputed cache
        entry), only on ``batch_size``; at 224 and 256 px not even on that (measured: 1, 2, 3, 7, 16).
        """
        loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=num_workers)
        batches = iter(tqdm(loader, desc=desc, disable=not progress, leave=False))
        while True:
            with phase("image decode + preprocessing"):
                batch = next(batches, None)
            if batch is None:
                return
            images = batch["image"]
            n = images.shape[0]
            if n < self.batch_size:  # a full batch always: see the docstring
                images = torch.cat([images, images.new_zeros((self.batch_size - n, *images.shape[1:]))])
            yield {k: v[:n].cpu() for k, v in self(images).items()}
