"""The conditional VAE objective (paper 2.2, Eq. 1; SPEC 2 "CVAE").

``L = L_recon + lambda_grad * L_grad + lambda_KL * L_KL`` on two-channel (real, imag) patches:

- ``L_recon``: L1 between reconstruction and input, mean over every element.
- ``L_grad``: L1 between the spatial finite differences of reconstruction and input, on the real
  and imaginary channels (the paper matches the gradients "between input and output", and both are
  two-channel tensors), so it sharpens phase edges as well as magnitude edges; the mean over the
  elements of each axis' differences, the two axes summed.
- ``L_KL``: ``KL(N(mu, sigma^2) || N(0, I))`` summed over the latent elements of a sample and
  averaged over the batch, the convention of MONAI's ``AutoencoderKL`` training, with which
  ``lambda_KL`` of order 1e-6 is used.

The paper does not report ``lambda_grad`` or ``lambda_KL``; the defaults are ``1.0`` (edges as
important as intensities) and ``1e-6`` (the latent-diffusion value: a weak prior that keeps the
latent smooth without costing reconstruction detail at a compression factor of only 4).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CVAELoss", "gradient_l1", "kl_standard_normal"]


def gradient_l1(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 distance between the spatial finite differences of two images.

    ``mean|D_h recon - D_h target| + mean|D_w recon - D_w target|`` with forward differences
    ``D_h x = x[..., 1:, :] - x[..., :-1, :]`` (and likewise along ``W``), each mean over all its
    elements, every channel included.

    Args:
        recon: ``(B, C, H, W)`` reconstruction, ``H, W >= 2``.
        target: ``(B, C, H, W)`` reference.

    Returns:
        Scalar tensor.

    Raises:
        ValueError: if the shapes differ, are not 4-D or an image axis is shorter than 2.
    """
    _check_pair(recon, target, "gradient_l1")
    if min(recon.shape[-2:]) < 2:
        raise ValueError(f"gradient_l1 needs H, W >= 2, got {tuple(recon.shape)}")
    error = recon - target
    # The difference of the errors is the error of the differences: one subtraction fewer.
    d_h = error[..., 1:, :] - error[..., :-1, :]
    d_w = error[..., :, 1:] - error[..., :, :-1]
    return d_h.abs().mean() + d_w.abs().mean()


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` of a diagonal Gaussian, per sample.

    ``0.5 * sum(mu^2 + exp(logvar) - logvar - 1)`` over every non-batch axis (nats).

    Args:
        mu: means ``(B, ...)``.
        logvar: log-variances, same shape.

    Returns:
        ``(B,)``.

    Raises:
        ValueError: if the shapes differ or have no non-batch axis.
    """
    if mu.shape != logvar.shape or mu.ndim < 2:
        raise ValueError(
            f"kl_standard_normal expects mu and logvar of one shape (B, ...), got "
            f"{tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1).flatten(1).sum(dim=1)


class CVAELoss(nn.Module):
    """Reconstruction L1 + gradient L1 + KL of the conditional VAE (paper 2.2, Eq. 1).

    All terms are computed in fp32 whatever the input dtype (mixed precision touches only the
    network). The terms are returned unweighted, detached, for logging.

    Args:
        lambda_grad: weight of the gradient term (not reported in the paper; default 1.0).
        lambda_kl: weight of the KL term, with KL summed per sample (not reported in the paper;
            default 1e-6).

    Raises:
        ValueError: if a weight is negative.

    Example:
        >>> loss = CVAELoss()
        >>> x = torch.rand(2, 2, 8, 8)
        >>> total, terms = loss(x, x, torch.zeros(2, 2, 4, 4), torch.zeros(2, 2, 4, 4))
        >>> float(total), sorted(terms)
        (0.0, ['grad', 'kl', 'recon', 'total'])
    """

    def __init__(self, lambda_grad: float = 1.0, lambda_kl: float = 1e-6) -> None:
        super().__init__()
        if lambda_grad < 0 or lambda_kl < 0:
            raise ValueError(f"CVAELoss weights must be >= 0, got lambda_grad={lambda_grad}, lambda_kl={lambda_kl}")
        self.lambda_grad = float(lambda_grad)
        self.lambda_kl = float(lambda_kl)

    def forward(
        self, recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Evaluate the objective.

        Args:
            recon: reconstruction ``(B, 2, H, W)`` (real, imag).
            target: input patches ``(B, 2, H, W)``.
            mu: posterior means ``(B, C, h, w)``.
            logvar: posterior log-variances ``(B, C, h, w)``.

        Returns:
            ``(total, terms)``: the scalar fp32 loss to back-propagate, and the detached scalars
            ``{"recon", "grad", "kl", "total"}`` (``kl`` per sample, averaged over the batch).

        Raises:
            ValueError: on mismatched or non-4-D shapes, or different batch sizes.
        """
        _check_pair(recon, target, "CVAELoss")
        if mu.shape[0] != recon.shape[0]:
            raise ValueError(
                f"CVAELoss: latent batch {tuple(mu.shape)} does not match image batch {tuple(recon.shape)}"
            )
        recon, target, mu, logvar = (t.float() for t in (recon, target, mu, logvar))
        l_recon = (recon - target).abs().mean()
        l_grad = gradient_l1(recon, target)
        l_kl = kl_standard_normal(mu, logvar).mean()
        total = l_recon + self.lambda_grad * l_grad + self.lambda_kl * l_kl
        terms = {"recon": l_recon, "grad": l_grad, "kl": l_kl, "total": total}
        return total, {name: value.detach() for name, value in terms.items()}


def _check_pair(recon: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if recon.shape != target.shape or recon.ndim != 4:
        raise ValueError(
            f"{name} expects recon and target of one shape (B, C, H, W), got "
            f"{tuple(recon.shape)} and {tuple(target.shape)}"
        )
