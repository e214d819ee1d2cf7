"""Context rows of joint attention: images a call's generated rows attend to (kept keyframes,
the scene's anchor keyframe, its style image), held at their clean latents through denoising.
Shared by `generate` and `regenerate`."""

from __future__ import annotations

import numpy as np
import torch

from .base import KeyframeRequest, derive_seed

#: seeds of context rows: derive_seed(shot seed, CONTEXT_INDEX_BASE + row), an index range that
#: keyframes never use
CONTEXT_INDEX_BASE = 10_000


def encode_latents(pipe, image: np.ndarray, dtype) -> torch.Tensor:
    """Deterministic VAE latents (mode of the posterior, scaled) of an RGB uint8 image."""
    # a copy: the image may be a read-only view (a decoded frame, a cached keyframe)
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    vdtype = torch.float32 if upcast else vae.dtype
    with torch.no_grad():
        if upcast:
            vae.to(torch.float32)
        try:
            dist = vae.encode(x.to(pipe._execution_device, vdtype)).latent_dist
            lat = dist.mode()
        finally:
            if upcast:
                vae.to(torch.float16)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((lat - shift) * vae.config.scaling_factor).to(dtype)


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` at width x height (cv2 INTER_AREA when it is another size)."""
    if image.shape[:2] == (height, width):
        return image
    import cv2

    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


class ContextRows:
    """The context rows of one call, shared by `generate` and `regenerate`: images fitted to the
    call's size, their prompts, their seeds (derive_seed(shot seed, CONTEXT_INDEX_BASE + row)),
    their noise and their clean VAE latents. `reset` puts them back, after every denoising step,
    to their clean latents noised to the next timestep, so they stay what they are while the
    generated rows attend to their tokens."""

    def __init__(self, pipe, request: KeyframeRequest, context: list[tuple[np.ndarray, str]],
                 size: tuple[int, int], device, dtype):
        W, H = size
        f = pipe.vae_scale_factor
        self.shape = (1, pipe.unet.config.in_channels, H // f, W // f)
        self.images = [fit(img, W, H) for img, _ in context]
        self.prompts = [p for _, p in context]
        self.seeds = [derive_seed(request.seed, CONTEXT_INDEX_BASE + j) for j in range(len(context))]
        self.noise = [torch.randn(self.shape, generator=torch.Generator("cpu").manual_seed(s)).to(device, dtype)
                      for s in self.seeds]
        self.x0 = [encode_latents(pipe, img, dtype) for img in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def generators(self) -> list[torch.Generator]:
        return [torch.Generator("cpu").manual_seed(s) for s in self.seeds]

    def noised(self, scheduler, t) -> list[torch.Tensor]:
        """The rows' clean latents noised to timestep `t` (a 1-element tensor)."""
        return [scheduler.add_noise(x0, n, t) for x0, n in zip(self.x0, self.noise)]

    def reset(self, latents: torch.Tensor, offset: int, scheduler, t_next) -> None:
        """Overwrite rows offset.. of `latents` with the context noised to `t_next`."""
        for j, x in enumerate(self.noised(scheduler, t_next)):
            latents[offset + j : offset + j + 1] = x.to(latents.dtype)
