"""Consistent self-attention across a shot's keyframes, as diffusers attention processors.

StoryDiffusion (Zhou et al., 2024, "StoryDiffusion: Consistent Self-Attention for Long-Range Image
and Video Generation"): during a batched denoising call, each image's self-attention also attends
to a random sample of the other images' tokens, so that the batch agrees on the face, the costume
and the set. It needs no training: only the keys/values of the UNet's self-attention (`attn1`)
change. Cross-attention (`attn2`, where the IP-Adapter processors live) is left alone.

Classifier-free guidance doubles the batch as [uncond rows, cond rows]; tokens are shared only
within the same half. When the processor is not active (off, a layer not selected, a step outside
the window, a batch of one row) it calls diffusers' `AttnProcessor2_0` unchanged, so "off" gives
exactly the independent result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from .presets import LAYER_GROUPS


@dataclass
class ConsistentAttentionState:
    """What the processors of one UNet share during a call; the generator sets it per call."""

    active: bool = False
    rows: int = 1  # images per CFG half (generated + context rows)
    sampling_rate: float = 0.5
    layers: str = "up"
    start: float = 0.0
    end: float = 1.0
    num_steps: int = 1
    step: int = 0
    seed: int = 0
    calls: int = 0

    def applies(self, group: str) -> bool:
        if not self.active or self.rows < 2 or self.sampling_rate <= 0:
            return False
        if group not in LAYER_GROUPS.get(self.layers, ()):
            return False
        frac = self.step / max(1, self.num_steps)
        return self.start <= frac and (frac < self.end or self.end >= 1.0)


def _group_of(name: str) -> str:
    if name.startswith("down_blocks"):
        return "down"
    if name.startswith("mid_block"):
        return "mid"
    return "up"


def sample_other_tokens(rows: int, tokens: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """For each row i, indices into the flattened (rows * tokens) sequence of a random sample of
    round(rate * (rows - 1) * tokens) tokens of the OTHER rows. Returns a (rows, K) LongTensor."""
    others = (rows - 1) * tokens
    k = max(1, int(round(min(1.0, rate) * others)))
    out = torch.empty(rows, k, dtype=torch.long)
    for i in range(rows):
        p = torch.randperm(others, generator=generator)[:k]
        row = p // tokens
        row = row + (row >= i).long()  # skip row i
        out[i] = row * tokens + p % tokens
    return out


class ConsistentSelfAttnProcessor:
    """attn1 processor: plain SDPA self-attention whose keys/values are the row's own tokens plus a
    sample of the other rows' tokens (same CFG half only)."""

    def __init__(self, state: ConsistentAttentionState, group: str):
        self.state = state
        self.group = group
        self.plain = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        ip_adapter_masks=None,  # accepted (cross_attention_kwargs reach every processor), unused
        *args,
        **kwargs,
    ) -> torch.Tensor:
        st = self.state
        usable = (
            encoder_hidden_states is None
            and attention_mask is None
            and hidden_states.ndim == 3
            and attn.spatial_norm is None
            and attn.group_norm is None
            and st.applies(self.group)
            and hidden_states.shape[0] % st.rows == 0
        )
        if not usable:
            return self.plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        return self._consistent(attn, hidden_states)

    def _consistent(self, attn: Attention, hidden_states: torch.Tensor) -> torch.Tensor:
        st = self.state
        residual = hidden_states
        batch, tokens, channels = hidden_states.shape
        rows = st.rows
        halves = batch // rows

        g = torch.Generator().manual_seed((int(st.seed) * 1_000_003 + st.calls) % (2**63 - 1))
        st.calls += 1
        idx = sample_other_tokens(rows, tokens, st.sampling_rate, g).to(hidden_states.device)

        grouped = hidden_states.reshape(halves, rows, tokens, channels)
        flat = grouped.reshape(halves, rows * tokens, channels)
        others = flat[:, idx]  # (halves, rows, K, C): tokens of the other rows of the same half
        kv_source = torch.cat([grouped, others], dim=2).reshape(batch, -1, channels)

        query = attn.to_q(hidden_states)
        key = attn.to_k(kv_source)
        value = attn.to_v(kv_source)
        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if getattr(attn, "norm_q", None) is not None:
            query = attn.norm_q(query)
        if getattr(attn, "norm_k", None) is not None:
            key = attn.norm_k(key)

        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def install_consistent_attention(unet, state: ConsistentAttentionState) -> int:
    """Put a ConsistentSelfAttnProcessor on every attn1 (self-attention) layer of `unet`, keeping
    every other processor (the IP-Adapter ones on attn2) as it is. Call it after load_ip_adapter,
    which replaces all processors. Returns how many layers got one."""
    procs = {}
    count = 0
    for name, proc in unet.attn_processors.items():
        if name.endswith("attn1.processor") and "motion_modules" not in name:
            procs[name] = ConsistentSelfAttnProcessor(state, _group_of(name))
            count += 1
        else:
            procs[name] = proc
    unet.set_attn_processor(procs)
    return count


def uninstall_consistent_attention(unet) -> int:
    """Put diffusers' plain AttnProcessor2_0 back where a ConsistentSelfAttnProcessor is. Needed
    before load_ip_adapter, which rebuilds every self-attention processor by calling its class
    without arguments. Returns how many layers were changed."""
    procs = {}
    count = 0
    for name, proc in unet.attn_processors.items():
        if isinstance(proc, ConsistentSelfAttnProcessor):
            procs[name] = AttnProcessor2_0()
            count += 1
        else:
            procs[name] = proc
    if count:
        unet.set_attn_processor(procs)
    return count

