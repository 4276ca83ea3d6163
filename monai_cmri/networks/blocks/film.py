"""Feature-wise linear modulation (FiLM) and a residual block conditioned through it (paper 2.2).

FiLM (Perez et al., AAAI 2018) lets a condition vector rescale and shift every channel of a feature
map. The conditional VAE uses it to adapt its encoder and decoder to the acquisition sequence, whose
intensity and phase statistics differ (paper 2.2, SPEC 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["FiLM", "FiLMResBlock"]


class FiLM(nn.Module):
    """Per-channel scale and shift predicted from a condition embedding.

    ``y = x * (1 + scale(c)) + shift(c)`` with ``(scale, shift)`` a linear function of the condition
    ``c``. The ``1 +`` makes a zero prediction the identity, and the projection starts at zero, so a
    freshly built network computes exactly what its unconditional twin would: the conditioning is
    learned as a residual correction instead of multiplying every activation by a random per-sequence
    factor from the first step, which would distort the signal statistics that the normalisation
    layers just set up. The gradient of the zero weights is not zero (it is the outer product of the
    condition and the back-propagated feature gradient), so the modulation still learns.

    Args:
        num_channels: channels ``C`` of the modulated feature map.
        cond_dim: size of the condition embedding.

    Example:
        >>> film = FiLM(num_channels=16, cond_dim=8)
        >>> film(torch.randn(4, 16, 12, 12), torch.randn(4, 8)).shape
        torch.Size([4, 16, 12, 12])
    """

    def __init__(self, num_channels: int, cond_dim: int) -> None:
        super().__init__()
        if num_channels < 1 or cond_dim < 1:
            raise ValueError(f"FiLM needs positive num_channels and cond_dim, got {num_channels} and {cond_dim}")
        self.num_channels = num_channels
        self.cond_dim = cond_dim
        self.proj = nn.Linear(cond_dim, 2 * num_channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Modulate ``x`` by the condition.

        Args:
            x: features ``(B, C, *spatial)`` with any number of spatial axes.
            cond: condition embedding ``(B, cond_dim)``.

        Returns:
            ``(B, C, *spatial)``, same dtype as ``x``.

        Raises:
            ValueError: if the channel count, the embedding size or the batch sizes do not match.
        """
        # Messages print shapes as lists and the broadcast view is built by unsqueezing, so that
        # TorchScript compiles this (it cannot size a tuple made from a tensor's shape).
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"FiLM expects x of shape (B, {self.num_channels}, ...), got {list(x.shape)}")
        if cond.ndim != 2 or cond.shape[0] != x.shape[0] or cond.shape[1] != self.cond_dim:
            raise ValueError(
                f"FiLM expects cond of shape ({x.shape[0]}, {self.cond_dim}) for x {list(x.shape)}, "
                f"got {list(cond.shape)}"
            )
        scale, shift = self.proj(cond).chunk(2, dim=1)
        while scale.ndim < x.ndim:
            scale, shift = scale.unsqueeze(-1), shift.unsqueeze(-1)
        return x * (1 + scale) + shift


class FiLMResBlock(nn.Module):
    """Pre-activation residual block with FiLM after each normalisation.

    ``h = conv2(drop(silu(film2(norm2(conv1(silu(film1(norm1(x)))))))))``, output ``skip(x) + h``,
    with GroupNorm, 3x3 convolutions and a 1x1 convolution on the skip path when the channel count
    changes. It is the layout of MONAI's ``AutoencoderKL`` residual block (itself the Stable
    Diffusion / LDM one); that block takes no condition, hence this one. Every normalisation is a
    conditional one, as in the FiLM paper where FiLM takes the place of the normalisation's affine
    step; at initialisation (zero FiLM projections) the block is an ordinary residual block.

    Args:
        spatial_dims: number of spatial axes (2 for patches).
        in_channels: input channels.
        out_channels: output channels.
        cond_dim: size of the condition embedding.
        norm_num_groups: GroupNorm groups; ``in_channels`` and ``out_channels`` must be divisible by it.
        norm_eps: GroupNorm epsilon.
        dropout: dropout probability before the second convolution.

    Raises:
        ValueError: if a channel count is not divisible by ``norm_num_groups``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        cond_dim: int,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for channels in (in_channels, out_channels):
            if channels % norm_num_groups:
                raise ValueError(f"FiLMResBlock: {channels} channels are not divisible by {norm_num_groups} groups")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm1 = nn.GroupNorm(norm_num_groups, in_channels, eps=norm_eps)
        self.film1 = FiLM(in_channels, cond_dim)
        self.conv1 = Convolution(spatial_dims, in_channels, out_channels, kernel_size=3, conv_only=True)
        self.norm2 = nn.GroupNorm(norm_num_groups, out_channels, eps=norm_eps)
        self.film2 = FiLM(out_channels, cond_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = Convolution(spatial_dims, out_channels, out_channels, kernel_size=3, conv_only=True)
        self.skip: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else Convolution(spatial_dims, in_channels, out_channels, kernel_size=1, conv_only=True)
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: features ``(B, in_channels, *spatial)``.
            cond: condition embedding ``(B, cond_dim)``.

        Returns:
            ``(B, out_channels, *spatial)``.
        """
        h = self.conv1(F.silu(self.film1(self.norm1(x), cond)))
        h = self.conv2(self.dropout(F.silu(self.film2(self.norm2(h), cond))))
        return self.skip(x) + h
