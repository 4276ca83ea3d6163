"""Conditional U-Net predicting the flow-matching velocity of VAE latents (paper 2.3, SPEC 2).

The network sees a latent ``x_t`` of shape ``(B, 2, 48, 48)``, the flow time ``t`` in ``[0, 1]``
(t=0 noise, t=1 data), the acquisition sequence and, in stage 2, the class label, and returns the
velocity ``v`` of the same shape. The conditions are summed into ONE vector (time embedding +
sequence embedding [+ class embedding]) that every residual block receives (paper 2.3).

Tokens. Sequences ``0..4`` follow :data:`monai_cmri.data.sequences.SEQUENCES` and
:data:`SEQUENCE_NULL` (``5``) is the classifier-free-guidance null token. Classes follow
:data:`CLASS_TOKENS` (the order of :data:`monai_cmri.data.dataset.LABELS`, with ``"unlabeled"``
called ``"unknown"``); ``"unknown"`` (``2``) is a real token, :data:`CLASS_NULL` (``3``) is the null.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding
from torch import nn

from monai_cmri.data.sequences import SEQUENCES

__all__ = [
    "FlowUNet",
    "SEQUENCE_NULL",
    "CLASS_TOKENS",
    "CLASS_NULL",
    "TIME_SCALE",
]

#: Index of the null (unconditional) sequence token, after the five real sequences.
SEQUENCE_NULL: int = len(SEQUENCES)
#: Stage-2 class tokens, in the order of :data:`monai_cmri.data.dataset.LABELS`.
CLASS_TOKENS: tuple[str, ...] = ("normal", "abnormal", "unknown")
#: Index of the null (unconditional) class token; ``"unknown"`` is not the null.
CLASS_NULL: int = len(CLASS_TOKENS)
#: MONAI's sinusoidal embedding is built for DDPM timesteps 0..1000; flow time t in [0, 1] is
#: multiplied by this before it, so t=1e-3 apart differ as one DDPM step would.
TIME_SCALE: float = 1000.0


class FlowUNet(DiffusionModelUNet):
    """2D U-Net of MONAI's ``DiffusionModelUNet`` conditioned on time, sequence and class (paper 2.3).

    Taken from MONAI unchanged: the layers (input convolution, residual blocks that add a projection
    of the conditioning vector, self-attention at the levels of ``attention_levels``, the middle
    block with attention, skip connections, zero-initialised output convolution) and the time MLP
    ``time_embed``. ``DiffusionModelUNet`` already sums a class embedding into its time embedding,
    which is the single-conditioning-vector design of the paper, but its ``forward`` is replaced
    here (it reuses the same submodules in the same order) for three reasons:

    * two token embeddings are summed (sequence and, in stage 2, class), where MONAI has one;
    * the sinusoidal embedding, the time MLP and the token embeddings run in fp32 even under
      ``torch.autocast`` (MONAI casts the sinusoid to ``x.dtype`` and runs the MLP under autocast,
      which in bf16 rounds t=0.500 and t=0.501 to nearly the same vector); SPEC 2 asks for t and its
      embedding in fp32;
    * inputs are checked (shapes, ``t`` in ``[0, 1]``, token ranges) with a ``ValueError``.

    The class embedding is zero-initialised, so a stage-2 network given stage-1 weights
    (:meth:`load_stage1`) computes exactly the stage-1 velocity until training moves it; during
    phase 1 of stage 2 only :meth:`new_conditioning_parameters` train.

    ``len(channels) - 1`` stride-2 downsamplings: H and W must be divisible by
    ``2 ** (len(channels) - 1)`` (48 -> 24 -> 12 with the defaults). The paper gives no widths;
    the defaults ``(128, 256, 256)`` with attention at the two lower levels (24x24 and 12x12) and two
    residual blocks per level are a latent-diffusion-sized U-Net for the GPU. ``channels=(8, 16),
    attention_levels=(False, True), num_res_blocks=1, norm_num_groups=4, num_head_channels=8``
    runs on a CPU in milliseconds.

    Args:
        in_channels: latent channels, 2.
        out_channels: velocity channels, 2.
        channels: width of each level.
        attention_levels: per level, whether its blocks have self-attention.
        num_res_blocks: residual blocks per level (an int or one per level).
        num_head_channels: channels per attention head (an int or one per level).
        norm_num_groups: GroupNorm groups; every entry of ``channels`` must be divisible by it.
        norm_eps: GroupNorm epsilon.
        resblock_updown: use residual blocks for down- and upsampling (MONAI's option).
        num_sequences: real sequence tokens; the null token is ``num_sequences``.
        num_classes: real class tokens for stage 2 (3 in the paper), the null token is
            ``num_classes``; ``None`` for stage 1 (no class embedding).
        use_flash_attention: use PyTorch's scaled-dot-product attention in the attention blocks.

    Example:
        >>> net = FlowUNet(channels=(8, 16), attention_levels=(False, True), num_res_blocks=1,
        ...                norm_num_groups=4, num_head_channels=8, num_classes=3)
        >>> v = net(torch.randn(2, 2, 48, 48), torch.tensor([0.0, 1.0]), torch.tensor([0, SEQUENCE_NULL]),
        ...         torch.tensor([2, CLASS_NULL]))
        >>> tuple(v.shape)
        (2, 2, 48, 48)
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 2,
        channels: Sequence[int] = (128, 256, 256),
        attention_levels: Sequence[bool] = (False, True, True),
        num_res_blocks: Sequence[int] | int = 2,
        num_head_channels: Sequence[int] | int = 32,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        resblock_updown: bool = False,
        num_sequences: int = len(SEQUENCES),
        num_classes: int | None = None,
        use_flash_attention: bool = False,
    ) -> None:
        super().__init__(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=out_channels,
            num_res_blocks=num_res_blocks,
            channels=channels,
            attention_levels=attention_levels,
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
            resblock_updown=resblock_updown,
            num_head_channels=num_head_channels,
            num_class_embeds=None,
            use_flash_attention=use_flash_attention,
        )
        time_embed_dim = self.time_embed[-1].out_features
        self.num_sequences = num_sequences
        self.num_classes = num_classes
        self.downsample_factor = 2 ** (len(channels) - 1)
        # one row more than the real tokens: the learnt null token of classifier-free guidance
        self.sequence_embedding = nn.Embedding(num_sequences + 1, time_embed_dim)
        self.class_embedding: nn.Embedding | None = None
        if num_classes is not None:
            self.class_embedding = nn.Embedding(num_classes + 1, time_embed_dim)
            # zero: adding stage 2's class embedding leaves the stage-1 function unchanged
            nn.init.zeros_(self.class_embedding.weight)

    @property
    def sequence_null(self) -> int:
        """Index of the null sequence token."""
        return self.num_sequences

    @property
    def class_null(self) -> int | None:
        """Index of the null class token, ``None`` without a class embedding."""
        return self.num_classes

    def conditioning(self, t: torch.Tensor, sequence: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        """The conditioning vector fed to every residual block, in fp32 (paper 2.3).

        Args:
            t: flow time ``(B,)`` in ``[0, 1]``, scaled by :data:`TIME_SCALE` before MONAI's sinusoid.
            sequence: sequence tokens ``(B,)``.
            label: class tokens ``(B,)`` or ``None`` (stage 1).

        Returns:
            ``(B, 4 * channels[0])`` float32.
        """
        with torch.autocast(device_type=t.device.type, enabled=False):
            t_freq = get_timestep_embedding(t.float() * TIME_SCALE, self.block_out_channels[0])
            emb = _linear_fp32(self.time_embed, t_freq)
            emb = emb + self.sequence_embedding.weight.float()[sequence]
            if self.class_embedding is not None and label is not None:
                emb = emb + self.class_embedding.weight.float()[label]
        return emb

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, t: torch.Tensor, sequence: torch.Tensor, label: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Velocity of the latent flow (paper 2.3).

        Args:
            x: latent ``x_t``, ``(B, C, H, W)`` float with ``H, W`` divisible by ``2 ** (levels - 1)``.
            t: flow time ``(B,)`` float in ``[0, 1]`` (t=0 noise, t=1 data).
            sequence: sequence tokens ``(B,)`` long in ``[0, num_sequences]`` (the last is null).
            label: class tokens ``(B,)`` long in ``[0, num_classes]`` (the last is null); required
                exactly when the network has a class embedding.

        Returns:
            velocity ``(B, out_channels, H, W)``.

        Raises:
            ValueError: on a wrong shape or dtype, ``t`` outside ``[0, 1]`` or a token out of range.
        """
        self._check_inputs(x, t, sequence, label)
        emb = self.conditioning(t, sequence, label)
        # same order of MONAI's submodules as DiffusionModelUNet.forward, without its ControlNet residuals
        h = self.conv_in(x)
        skips: list[torch.Tensor] = [h]
        for down_block in self.down_blocks:
            h, res_samples = down_block(hidden_states=h, temb=emb, context=None)
            skips.extend(res_samples)
        h = self.middle_block(hidden_states=h, temb=emb, context=None)
        for up_block in self.up_blocks:
            n = len(up_block.resnets)
            h = up_block(hidden_states=h, res_hidden_states_list=skips[-n:], temb=emb, context=None)
            skips = skips[:-n]
        out: torch.Tensor = self.out(h)
        return out

    def _check_inputs(
        self, x: torch.Tensor, t: torch.Tensor, sequence: torch.Tensor, label: torch.Tensor | None
    ) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        batch, (height, width) = x.shape[0], x.shape[2:]
        if height % self.downsample_factor or width % self.downsample_factor:
            raise ValueError(
                f"x: H and W must be divisible by {self.downsample_factor} "
                f"({len(self.block_out_channels) - 1} downsamplings), got {height}x{width}"
            )
        if not torch.is_floating_point(t) or t.shape != (batch,):
            raise ValueError(f"t: expected a float tensor of shape ({batch},), got {t.dtype} {tuple(t.shape)}")
        if not bool(torch.all((t >= 0) & (t <= 1))):
            raise ValueError(f"t: expected flow times in [0, 1], got min {t.min().item()} max {t.max().item()}")
        _check_tokens("sequence", sequence, batch, self.num_sequences)
        if self.num_classes is None:
            if label is not None:
                raise ValueError("label: this network has no class embedding (num_classes=None); pass label=None")
        else:
            if label is None:
                raise ValueError(
                    f"label: required by a network with num_classes={self.num_classes} (null token {self.num_classes})"
                )
            _check_tokens("label", label, batch, self.num_classes)

    def new_conditioning_parameters(self) -> list[nn.Parameter]:
        """Parameters that stage 2 adds to stage 1 (the class embedding): the only ones trained in phase 1."""
        return [] if self.class_embedding is None else list(self.class_embedding.parameters())

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Parameters loaded from stage 1: frozen in phase 1, a lower learning rate in phase 2."""
        new = {id(p) for p in self.new_conditioning_parameters()}
        return [p for p in self.parameters() if id(p) not in new]

    def load_stage1(self, source: Mapping[str, torch.Tensor] | str | os.PathLike) -> None:
        """Load a stage-1 state dict into this network exactly; only the class embedding is left as is.

        Args:
            source: a state dict or the path of a file holding one (``torch.save``).

        Raises:
            ValueError: when keys are missing or unexpected, or a shape differs; the message names
                the source and the keys.
        """
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "the given state dict"
        if isinstance(source, (str, os.PathLike)):
            state = torch.load(source, map_location="cpu", weights_only=True)
        else:
            state = source
        own = self.state_dict()
        new_keys = {k for k in own if k.startswith("class_embedding.")}
        missing = sorted(set(own) - new_keys - set(state))
        unexpected = sorted(set(state) - set(own) | (set(state) & new_keys))
        mismatched = sorted(k for k in set(state) & set(own) if tuple(state[k].shape) != tuple(own[k].shape))
        if missing or unexpected or mismatched:
            details = "; ".join(
                f"{what}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
                for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", mismatched))
                if keys
            )
            raise ValueError(f"{name} is not a stage-1 state of this network ({details})")
        self.load_state_dict(dict(state), strict=False)


def _linear_fp32(mlp: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run MONAI's time MLP (Linear, SiLU, Linear) in fp32 whatever the parameter dtype."""
    for layer in mlp:
        if isinstance(layer, nn.Linear):
            bias = None if layer.bias is None else layer.bias.float()
            x = nn.functional.linear(x, layer.weight.float(), bias)
        else:
            x = layer(x)
    return x


def _check_tokens(name: str, tokens: torch.Tensor, batch: int, null: int) -> None:
    if tokens.dtype != torch.long or tokens.shape != (batch,):
        raise ValueError(
            f"{name}: expected a long tensor of shape ({batch},), got {tokens.dtype} {tuple(tokens.shape)}"
        )
    if bool(torch.any((tokens < 0) | (tokens > null))):
        raise ValueError(f"{name}: tokens must lie in [0, {null}] ({null} is the null token), got {tokens.tolist()}")
