"""Training and evaluation iterations of the conditional VAE for MONAI's engines (paper 2.2, SPEC 2).

``SupervisedTrainer`` computes ``loss_function(network(image), label)``; the VAE instead returns
``(recon, mu, logvar)``, is conditioned on the acquisition sequence and is trained on a loss of all
three (:class:`~monai_cmri.losses.CVAELoss`). The functions here plug into MONAI's engines through
their ``prepare_batch`` and ``iteration_update`` arguments, so the bundles keep MONAI's trainer,
evaluator and handlers:

* :func:`prepare_cvae_batch` turns a :class:`~monai_cmri.data.dataset.PatchDataset` batch into
  ``(image, image, (sequence,), {})``: the target of a VAE is its input;
* :func:`cvae_train_step` is the ``iteration_update`` of a ``SupervisedTrainer``;
* :class:`CVAEEvalStep` is the ``iteration_update`` of a ``SupervisedEvaluator``;
* :func:`lower_is_better` is the ``metric_cmp_fn`` for a loss used as key metric.

Both steps leave in ``engine.state.output`` (a dict; run the engines with ``decollate=False``):
``image`` and ``label`` (the input patches ``(B, 2, H, W)``), ``pred`` (reconstruction, fp32,
detached), ``mu`` and ``logvar`` (``(B, 2, H/2, W/2)``), ``sequence`` ``(B,)``, ``loss`` (scalar)
and the unweighted terms ``loss_recon``, ``loss_grad``, ``loss_kl``.

Precision (STYLE 7): only the network runs under autocast; the loss and its terms are fp32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys

from monai_cmri.losses import CVAELoss

__all__ = ["prepare_cvae_batch", "cvae_train_step", "CVAEEvalStep", "lower_is_better"]


def prepare_cvae_batch(
    batchdata: Mapping[str, Any],
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor], dict[str, Any]]:
    """Inputs, target and condition of the VAE from a patch batch (MONAI ``prepare_batch``).

    Args:
        batchdata: a collated :class:`~monai_cmri.data.dataset.PatchDataset` batch with ``image``
            ``(B, 2, H, W)`` float and ``sequence`` ``(B,)`` integer indices.
        device: where to move the tensors.
        non_blocking: passed to ``Tensor.to``.
        kwargs: further ``Tensor.to`` arguments (the engine's ``to_kwargs``).

    Returns:
        ``(image, image, (sequence,), {})``: the engine's 4-tuple form, whose third element is
        passed to the network after the image, ``network(image, sequence)``.

    Raises:
        ValueError: if a key is missing or a tensor has the wrong shape or dtype.
    """
    if not isinstance(batchdata, Mapping) or "image" not in batchdata or "sequence" not in batchdata:
        found = sorted(batchdata) if isinstance(batchdata, Mapping) else type(batchdata).__name__
        raise ValueError(f"prepare_cvae_batch expects a batch dict with 'image' and 'sequence', got {found}")
    image, sequence = batchdata["image"], batchdata["sequence"]
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != 2:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"prepare_cvae_batch: 'image' must be a (B, 2, H, W) tensor, got {shape}")
    if (
        not isinstance(sequence, torch.Tensor)
        or sequence.dtype.is_floating_point
        or sequence.shape != (image.shape[0],)
    ):
        raise ValueError(
            f"prepare_cvae_batch: 'sequence' must be an integer tensor ({image.shape[0]},), got {sequence!r}"
        )
    # A MetaTensor would carry per-item metadata through every layer; the VAE needs none.
    image = torch.as_tensor(image).to(device=device, non_blocking=non_blocking, **kwargs)
    sequence = torch.as_tensor(sequence).to(device=device, non_blocking=non_blocking, **kwargs)
    return image, image, (sequence,), {}


def cvae_train_step(engine: SupervisedTrainer, batchdata: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """One optimisation step of the VAE objective (paper Eq. 1): the ``iteration_update`` of a trainer.

    The engine's ``loss_function`` must be a :class:`~monai_cmri.losses.CVAELoss`; its
    ``prepare_batch`` must return the 4-tuple of :func:`prepare_cvae_batch`. The network runs in
    training mode (reparameterised latent draw), under ``torch.autocast`` on the engine's device
    when ``engine.amp`` is set, with the trainer's gradient scaler if it has one. The engine events
    ``FORWARD_COMPLETED``, ``LOSS_COMPLETED``, ``BACKWARD_COMPLETED`` and ``MODEL_COMPLETED`` fire as
    in MONAI's own step.

    Args:
        engine: the ``SupervisedTrainer`` (network, optimizer, loss_function, inferer, amp).
        batchdata: one collated batch.

    Returns:
        The iteration output (see the module docstring); also stored in ``engine.state.output``.

    Raises:
        ValueError: if ``batchdata`` is None, the loss is not a ``CVAELoss`` or gradient
            accumulation is requested (not supported by this step).
    """
    if batchdata is None:
        raise ValueError("cvae_train_step: no batch data for this iteration")
    loss_function = engine.loss_function
    if not isinstance(loss_function, CVAELoss):
        raise ValueError(f"cvae_train_step needs a CVAELoss as the trainer's loss_function, got {loss_function!r}")
    if getattr(engine, "accumulation_steps", 1) != 1:
        raise ValueError(f"cvae_train_step does not accumulate gradients, got {engine.accumulation_steps} steps")
    image, target, args, kwargs = engine.prepare_batch(
        batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs
    )
    engine.state.output = output = {Keys.IMAGE: image, Keys.LABEL: target, "sequence": args[0]}

    engine.network.train()
    engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
    with _autocast(engine):
        recon, mu, logvar = engine.inferer(image, engine.network, *args, **kwargs)
    output.update({Keys.PRED: recon.detach().float(), "mu": mu.detach().float(), "logvar": logvar.detach().float()})
    engine.fire_event(IterationEvents.FORWARD_COMPLETED)

    loss, terms = loss_function(recon, target, mu, logvar)
    output[Keys.LOSS] = loss
    output.update({f"loss_{name}": value for name, value in terms.items() if name != "total"})
    engine.fire_event(IterationEvents.LOSS_COMPLETED)

    if engine.amp and engine.scaler is not None:
        engine.scaler.scale(loss).backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        engine.scaler.step(engine.optimizer)
        engine.scaler.update()
    else:
        loss.backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        engine.optimizer.step()
    # Handlers read the value; the graph is not needed any more.
    output[Keys.LOSS] = loss.detach()
    engine.fire_event(IterationEvents.MODEL_COMPLETED)
    return output


class CVAEEvalStep:
    """Reconstruction of a batch without gradients: the ``iteration_update`` of an evaluator.

    The network runs in the evaluator's mode (``eval`` by default, where the VAE decodes the
    posterior mean, so reconstructions are deterministic), under autocast when ``engine.amp`` is
    set. With a ``loss_function``, the objective and its terms are reported too, so that the
    validation loss can select the checkpoint.

    Args:
        loss_function: the training objective, or None to skip the loss.

    Example:
        ``SupervisedEvaluator(..., prepare_batch=prepare_cvae_batch,
        iteration_update=CVAEEvalStep(CVAELoss()), decollate=False)``
    """

    def __init__(self, loss_function: CVAELoss | None = None) -> None:
        if loss_function is not None and not isinstance(loss_function, CVAELoss):
            raise ValueError(f"CVAEEvalStep needs a CVAELoss or None, got {loss_function!r}")
        self.loss_function = loss_function

    def __call__(self, engine: SupervisedEvaluator, batchdata: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Run one batch.

        Args:
            engine: the ``SupervisedEvaluator`` (network, inferer, mode, amp).
            batchdata: one collated batch.

        Returns:
            The iteration output (see the module docstring); the loss entries only with a
            ``loss_function``.

        Raises:
            ValueError: if ``batchdata`` is None.
        """
        if batchdata is None:
            raise ValueError("CVAEEvalStep: no batch data for this iteration")
        image, target, args, kwargs = engine.prepare_batch(
            batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs
        )
        engine.state.output = output = {Keys.IMAGE: image, Keys.LABEL: target, "sequence": args[0]}
        with engine.mode(engine.network), _autocast(engine):
            recon, mu, logvar = engine.inferer(image, engine.network, *args, **kwargs)
        recon, mu, logvar = recon.float(), mu.float(), logvar.float()
        output.update({Keys.PRED: recon, "mu": mu, "logvar": logvar})
        if self.loss_function is not None:
            with torch.no_grad():
                loss, terms = self.loss_function(recon, target, mu, logvar)
            output[Keys.LOSS] = loss
            output.update({f"loss_{name}": value for name, value in terms.items() if name != "total"})
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return output


def lower_is_better(current: float, best: float) -> bool:
    """``metric_cmp_fn`` for a key metric that is a loss.

    MONAI's workflows start ``best_metric`` at ``-1`` and replace it when ``metric_cmp_fn(current,
    best)`` is true; their default, ``current > best``, suits scores such as Dice. For a loss (never
    negative) a negative ``best`` means "none yet".

    Args:
        current: the metric of this epoch.
        best: the best so far, ``-1`` before the first.

    Returns:
        True if ``current`` is the new best.
    """
    return best < 0 or current < best


def _backward_step(engine: Any, loss: torch.Tensor, max_grad_norm: float | None) -> torch.Tensor:
    """Backward, gradient-norm clipping and the optimizer step of a training iteration.

    Uses the trainer's gradient scaler when ``engine.amp`` (gradients are unscaled before the
    norm), clips the norm of the parameters that have gradients to ``max_grad_norm`` unless it is
    None, and fires ``BACKWARD_COMPLETED`` after the backward pass.

    Returns:
        The total gradient norm before clipping, detached fp32 (0 when no parameter has a gradient).
    """
    scaler = engine.scaler if engine.amp and engine.scaler is not None else None
    (scaler.scale(loss) if scaler is not None else loss).backward()
    engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
    if scaler is not None:
        scaler.unscale_(engine.optimizer)
    parameters = [p for group in engine.optimizer.param_groups for p in group["params"] if p.grad is not None]
    if max_grad_norm is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    else:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in parameters]) if parameters else torch.zeros(())
    if scaler is not None:
        scaler.step(engine.optimizer)
        scaler.update()
    else:
        engine.optimizer.step()
    return grad_norm.detach().float()


def _autocast(engine: Any) -> torch.autocast:
    """Autocast on the engine's device when ``engine.amp``; a disabled context otherwise."""
    device = engine.state.device if engine.state.device is not None else torch.device("cpu")
    device_type = torch.device(device).type
    return torch.autocast(device_type, enabled=bool(engine.amp), **engine.amp_kwargs)
