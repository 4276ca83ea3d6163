"""SE-ResNet binary classifier on two-channel (real, imag) inputs (paper 2.4.1, 2.4.2; SPEC 3).

One architecture serves both evaluations of the paper: real versus synthetic ``(2, 48, 48)``
latents after stage 1 (2.4.1) and normal versus abnormal decoded ``(2, 96, 96)`` patches after
stage 2 (2.4.2). Global average pooling before the linear head makes the network independent of
the input size, so only the data changes between the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import ChannelSELayer, Convolution
from monai.networks.layers.utils import get_act_layer
from torch import nn

__all__ = ["SEResNetBlock", "SEResNetClassifier"]


class SEResNetBlock(nn.Module):
    """Basic residual block with channel squeeze-and-excitation (Hu et al., SE-ResNet-18/34 form)::

        x --conv3x3(stride)-norm-act--conv3x3-norm--SE--(+)--act-->
         \\------------ shortcut (identity or conv1x1(stride)-norm) ---/

    The SE gate rescales each channel of the residual branch before the addition, as in the
    SE-ResNet of the SE paper. The convolutions (with their normalisation and activation) are MONAI
    ``Convolution`` blocks and the gate is MONAI's ``ChannelSELayer``.

    Args:
        in_channels: channels of the input ``(B, in_channels, H, W)``.
        out_channels: channels of the output ``(B, out_channels, H', W')``.
        stride: stride of the first convolution and of the projection shortcut; 2 halves H and W
            (``H' = ceil(H / 2)``).
        se_reduction: reduction ratio ``r`` of the SE bottleneck (``out_channels // r`` hidden
            units); must not exceed ``out_channels``.
        norm: MONAI normalisation name or ``(name, kwargs)``, e.g. ``"batch"``, ``"instance"``,
            ``("group", {"num_groups": 8})``.
        act: MONAI activation name or ``(name, kwargs)`` of the convolutions and of the block output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        se_reduction: int = 4,
        norm: str | tuple = "batch",
        act: str | tuple = ("relu", {"inplace": True}),
    ) -> None:
        super().__init__()
        self.conv1 = Convolution(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=out_channels,
            strides=stride,
            kernel_size=3,
            norm=norm,
            act=act,
            bias=False,
        )
        self.conv2 = Convolution(
            spatial_dims=2,
            in_channels=out_channels,
            out_channels=out_channels,
            kernel_size=3,
            norm=norm,
            act=None,
            bias=False,
        )
        self.se = ChannelSELayer(spatial_dims=2, in_channels=out_channels, r=se_reduction)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Convolution(
                spatial_dims=2,
                in_channels=in_channels,
                out_channels=out_channels,
                strides=stride,
                kernel_size=1,
                norm=norm,
                act=None,
                bias=False,
            )
        self.act = get_act_layer(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: ``(B, in_channels, H, W)``.

        Returns:
            ``(B, out_channels, H', W')``.
        """
        return self.act(self.se(self.conv2(self.conv1(x))) + self.shortcut(x))


class SEResNetClassifier(nn.Module):
    """2D ResNet with squeeze-and-excitation for one binary decision (paper 2.4.1, 2.4.2).

    Layout: a 3x3 stem convolution to ``channels[0]`` (stride ``stem_stride``), then one stage per
    entry of ``channels`` with ``blocks[i]`` :class:`SEResNetBlock`; every stage after the first
    halves H and W in its first block. Global average pooling, dropout and a linear layer give one
    logit per sample. Paper 2.4.1 calls for a "ResNet-based" classifier "with squeeze-and-excitation
    attention"; 2.4.2 uses the same network on decoded patches. The paper gives no widths or depths.
    The defaults (``channels=(32, 64, 128, 256)``, one block per stage, 1.27 M parameters) take a
    48x48 latent to 6x6 and a 96x96 patch to 12x12 before pooling; ``channels=(16, 32, 64),
    blocks=(1, 1, 1)`` is the CPU profile (80 k parameters).

    Taken from MONAI: ``monai.networks.blocks.Convolution`` (conv + norm + activation, with MONAI's
    norm/activation factories, so ``norm`` and ``act`` accept MONAI's names), ``ChannelSELayer``
    (the SE gate: global average pool, ``Linear -> ReLU -> Linear -> sigmoid``, channel-wise product)
    and ``get_act_layer``. Written here: the basic residual block and the stage layout, because
    MONAI offers SE only in bottleneck blocks (``SEBlock``, ``SEResNetBottleneck``: 1x1-3x3-1x1 with
    a 4x expansion), its ``SENet`` fixes a 7x7 stride-2 stem with max pooling (48 -> 12 before the
    first stage), BatchNorm and widths ``64 * 2**k`` over exactly four stages, and its ``ResNet`` has
    no SE, exactly four stages and builds every block with BatchNorm whatever ``norm`` says. None
    of them allows the three-stage 16-channel CPU profile.

    TorchScript: ``torch.jit.script(model)`` works. The input check in :meth:`forward` is
    script-compatible; in a scripted model it surfaces as ``torch.jit.Error`` (whose message names
    ``ValueError``) rather than ``ValueError``.

    Args:
        in_channels: input channels, 2 for (real, imag).
        channels: width of each stage; ``len(channels)`` stages, ``len(channels) - 1`` halvings.
        blocks: residual blocks per stage, same length as ``channels``.
        stem_stride: stride of the stem convolution (2 halves the input once more, e.g. to save
            compute on 96x96 patches).
        se_reduction: SE reduction ratio ``r``; must not exceed ``channels[0]``.
        dropout: dropout probability before the linear head.
        norm: MONAI normalisation name or ``(name, kwargs)``: ``"batch"`` (default),
            ``"instance"``, ``("group", {"num_groups": 8})``, ...
        act: MONAI activation name or ``(name, kwargs)``.

    Raises:
        ValueError: if ``channels`` is empty, ``blocks`` has another length or a non-positive
            entry, ``dropout`` is outside ``[0, 1)`` or ``se_reduction`` exceeds a stage width.

    Example:
        >>> net = SEResNetClassifier(channels=(16, 32, 64), blocks=(1, 1, 1)).eval()
        >>> net(torch.randn(4, 2, 48, 48)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        in_channels: int = 2,
        channels: Sequence[int] = (32, 64, 128, 256),
        blocks: Sequence[int] = (1, 1, 1, 1),
        stem_stride: int = 1,
        se_reduction: int = 4,
        dropout: float = 0.0,
        norm: str | tuple = "batch",
        act: str | tuple = ("relu", {"inplace": True}),
    ) -> None:
        super().__init__()
        channels, blocks = tuple(int(c) for c in channels), tuple(int(n) for n in blocks)
        if not channels or len(blocks) != len(channels):
            raise ValueError(f"channels and blocks need the same non-zero length, got {channels} and {blocks}.")
        if min(blocks) < 1 or min(channels) < 1:
            raise ValueError(f"channels and blocks must be positive, got {channels} and {blocks}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if not 1 <= se_reduction <= min(channels):
            raise ValueError(f"se_reduction must be in [1, {min(channels)}] (the narrowest stage), got {se_reduction}.")
        self.in_channels = in_channels
        self.channels = channels
        self.blocks = blocks

        self.stem = Convolution(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=channels[0],
            strides=stem_stride,
            kernel_size=3,
            norm=norm,
            act=act,
            bias=False,
        )
        stages: list[nn.Module] = []
        width = channels[0]
        for level, (out_width, depth) in enumerate(zip(channels, blocks)):
            stage = []
            for index in range(depth):
                stride = 2 if level > 0 and index == 0 else 1
                stage.append(SEResNetBlock(width, out_width, stride, se_reduction, norm, act))
                width = out_width
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels[-1], 1)

        # He initialisation for ReLU networks, as in MONAI's ResNet.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch.

        Args:
            x: ``(B, in_channels, H, W)`` float, channels (real, imag); 48x48 latents (2.4.1) or
                96x96 patches (2.4.2), any ``H, W >= 16``.

        Returns:
            ``(B, 1)`` logits, MONAI's ``(B, classes)`` layout with one class, as the bundle's
            ``network_data_format`` declares it; ``torch.sigmoid`` gives the probability of the
            positive class (synthetic in 2.4.1, abnormal in 2.4.2).

        Raises:
            ValueError: if ``x`` is not 4D with ``in_channels`` channels (``torch.jit.Error`` when
                scripted).
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                "SEResNetClassifier expects (B, " + str(self.in_channels) + ", H, W), got " + str(list(x.shape))
            )
        h = self.stages(self.stem(x))
        h = torch.flatten(self.pool(h), 1)
        return self.head(self.dropout(h))
