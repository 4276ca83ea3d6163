"""Training and validation iterations of latent flow matching for MONAI's engines (paper 2.3, SPEC 2).

The flow bundles train :class:`~monai_cmri.networks.nets.flow_unet.FlowUNet` with MONAI's
``SupervisedTrainer`` and validate with its ``SupervisedEvaluator``; the functions here plug into
them through ``prepare_batch`` and ``iteration_update``, as :mod:`monai_cmri.engines.cvae` does for
the VAE:

* :func:`prepare_flow_batch` turns a :class:`~monai_cmri.latents.LatentDataset` batch into
  ``(latent, latent, (sequence, label), {})``;
* :class:`FlowTrainStep` is the trainer's ``iteration_update``: it draws ``t`` (logit-normal or
  uniform) and the noise, drops the condition to its null token for a fraction of the samples
  (the sequence in stage 1, the class in stage 2), regresses the velocity of the linear path
  (:mod:`monai_cmri.flow.path`), clips the gradient norm and steps the optimizer;
* :class:`FlowEvalStep` is the evaluator's ``iteration_update``: the same loss without dropping, at
  times and noise drawn from a generator seeded per batch, so that every validation sees the same
  draws and its loss compares across epochs (the evaluator's network is the EMA copy);
* :class:`TwoPhaseFinetuning` and :func:`stage2_parameter_groups` implement stage 2's protocol:
  phase 1 trains only the class embedding, phase 2 everything with a lower learning rate on the
  stage-1 parameters;
* :func:`load_stage1` builds the stage-2 network from a stage-1 checkpoint, exactly.

EMA of the weights: Ignite's ``ignite.handlers.EMAHandler``, listed among the trainer's handlers
(MONAI has no EMA handler). Its ``ema_model`` is a module, so :class:`~monai_cmri.engines.TrainerState`
saves and restores it like the network, and the evaluator, the best-model saver and every sampler
use it. The momentum is ``1 - decay`` per iteration.

Random numbers: the training draws (``t``, noise, dropping) come from torch's global generator,
whose state :class:`~monai_cmri.engines.TrainerState` saves every epoch, so a resumed run draws what
an uninterrupted one would have.

Precision (STYLE 7): ``t`` and its embedding are fp32 (the network sees to the embedding); only the
network runs under autocast; the loss is computed in fp32.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys
from torch import nn

from monai_cmri.engines.cvae import _autocast, _backward_step
from monai_cmri.engines.trainer_state import _unwrap
from monai_cmri.flow.path import interpolate, target_velocity
from monai_cmri.flow.timesteps import sample_logit_normal, sample_uniform

__all__ = [
    "TIME_SAMPLING",
    "prepare_flow_batch",
    "sample_times",
    "flow_matching_loss",
    "FlowTrainStep",
    "FlowEvalStep",
    "stage2_parameter_groups",
    "TwoPhaseFinetuning",
    "load_stage1",
]

#: Training-time distributions: ``"logit_normal"`` (SD3, MAISI; the default) and ``"uniform"``.
TIME_SAMPLING: tuple[str, ...] = ("logit_normal", "uniform")


def prepare_flow_batch(
    batchdata: Mapping[str, Any],
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor], dict[str, Any]]:
    """Latents and conditions of a batch (MONAI ``prepare_batch``).

    Args:
        batchdata: a collated :class:`~monai_cmri.latents.LatentDataset` batch with ``latent``
            ``(B, C, h, w)`` float, ``sequence`` ``(B,)`` and ``label`` ``(B,)`` integer indices
            (labels in the order normal, abnormal, unlabeled: the class tokens of
            :data:`~monai_cmri.networks.nets.flow_unet.CLASS_TOKENS`, "unlabeled" being "unknown").
        device: where to move the tensors.
        non_blocking: passed to ``Tensor.to``.
        kwargs: further ``Tensor.to`` arguments (the engine's ``to_kwargs``).

    Returns:
        ``(latent, latent, (sequence, label), {})``, the engine's 4-tuple form; the tokens are long.

    Raises:
        ValueError: if a key is missing or a tensor has the wrong shape.
    """
    keys = ("latent", "sequence", "label")
    if not isinstance(batchdata, Mapping) or any(key not in batchdata for key in keys):
        found = sorted(batchdata) if isinstance(batchdata, Mapping) else type(batchdata).__name__
        raise ValueError(f"prepare_flow_batch expects a batch dict with {list(keys)}, got {found}")
    latent = batchdata["latent"]
    if not isinstance(latent, torch.Tensor) or latent.ndim != 4:
        shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise ValueError(f"prepare_flow_batch: 'latent' must be a (B, C, h, w) tensor, got {shape}")
    tokens = []
    for key in ("sequence", "label"):
        value = torch.as_tensor(batchdata[key])
        if value.dtype.is_floating_point or value.shape != (latent.shape[0],):
            raise ValueError(f"prepare_flow_batch: '{key}' must be integers of shape ({latent.shape[0]},), got {value!r}")
        tokens.append(value.long().to(device=device, non_blocking=non_blocking))
    latent = torch.as_tensor(latent).float().to(device=device, non_blocking=non_blocking, **kwargs)
    return latent, latent, (tokens[0], tokens[1]), {}


def sample_times(
    batch_size: int,
    sampling: str = "logit_normal",
    location: float = 0.0,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Training times ``(B,)`` float32 in ``[0, 1]`` from one of :data:`TIME_SAMPLING`.

    Raises:
        ValueError: for an unknown ``sampling``.
    """
    if sampling == "logit_normal":
        return sample_logit_normal(batch_size, location, scale, generator=generator, device=device)
    if sampling == "uniform":
        return sample_uniform(batch_size, generator=generator, device=device)
    raise ValueError(f"unknown time sampling {sampling!r}; expected one of {', '.join(TIME_SAMPLING)}")


def flow_matching_loss(velocity: torch.Tensor, noise: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Mean squared error between a predicted velocity and the path's target ``data - noise`` (paper Eq. 4).

    Args:
        velocity: network output ``(B, C, h, w)``, any float dtype (cast to fp32).
        noise: ``x_0 = eps`` ``(B, C, h, w)``.
        data: ``x_1`` ``(B, C, h, w)``.

    Returns:
        fp32 scalar.
    """
    return torch.mean((velocity.float() - target_velocity(noise.float(), data.float())) ** 2)


class FlowTrainStep:
    """One flow-matching optimisation step: the ``iteration_update`` of a ``SupervisedTrainer``.

    Per sample: ``t`` from :func:`sample_times`, ``eps ~ N(0, I)``, ``x_t = (1 - t) eps + t x_1``;
    with probability ``drop_prob`` the condition named by ``drop`` is replaced by the network's null
    token (classifier-free guidance training); loss :func:`flow_matching_loss`. The network runs in
    training mode under autocast when ``engine.amp``; the gradient norm is clipped to
    ``max_grad_norm`` (after unscaling, with a gradient scaler). A stage-1 network (no class
    embedding) is called without the label.

    The iteration output (``engine.state.output``, a dict; run with ``decollate=False``): ``loss``
    (detached scalar), ``t`` ``(B,)``, ``dropped`` (bool ``(B,)``), ``grad_norm`` (before clipping),
    ``sequence`` and ``label`` (the tokens the network saw).

    Args:
        drop_prob: fraction of samples whose condition is dropped (0.1 in the paper).
        drop: ``"sequence"`` (stage 1) or ``"class"`` (stage 2: guidance on the class only).
        time_sampling: one of :data:`TIME_SAMPLING`.
        time_location: location of the logit-normal distribution.
        time_scale: scale of the logit-normal distribution.
        max_grad_norm: clipping threshold of the global gradient norm; ``None`` or ``<= 0`` disables.

    Raises:
        ValueError: for a ``drop_prob`` outside ``[0, 1]``, an unknown ``drop`` or time sampling.
    """

    def __init__(
        self,
        drop_prob: float = 0.1,
        drop: str = "sequence",
        time_sampling: str = "logit_normal",
        time_location: float = 0.0,
        time_scale: float = 1.0,
        max_grad_norm: float | None = 1.0,
    ) -> None:
        if not 0.0 <= float(drop_prob) <= 1.0:
            raise ValueError(f"FlowTrainStep: drop_prob must lie in [0, 1], got {drop_prob}")
        if drop not in ("sequence", "class"):
            raise ValueError(f"FlowTrainStep: drop must be 'sequence' or 'class', got {drop!r}")
        if time_sampling not in TIME_SAMPLING:
            raise ValueError(f"FlowTrainStep: unknown time sampling {time_sampling!r}; expected one of {TIME_SAMPLING}")
        self.drop_prob = float(drop_prob)
        self.drop = drop
        self.time_sampling = time_sampling
        self.time_location = float(time_location)
        self.time_scale = float(time_scale)
        self.max_grad_norm = None if max_grad_norm is None or max_grad_norm <= 0 else float(max_grad_norm)

    def __call__(self, engine: SupervisedTrainer, batchdata: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Run one batch; returns the iteration output.

        Raises:
            ValueError: if ``batchdata`` is None, gradient accumulation is requested, or the network
                lacks the class embedding that ``drop="class"`` needs.
        """
        if batchdata is None:
            raise ValueError("FlowTrainStep: no batch data for this iteration")
        if getattr(engine, "accumulation_steps", 1) != 1:
            raise ValueError(f"FlowTrainStep does not accumulate gradients, got {engine.accumulation_steps} steps")
        data, _, (sequence, label), _ = engine.prepare_batch(
            batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs
        )
        network = _unwrap(engine.network)
        device, batch = data.device, data.shape[0]
        t = sample_times(batch, self.time_sampling, self.time_location, self.time_scale).to(device)
        # drawn by the CPU generator, whose state the trainer state saves, then moved
        noise = torch.randn(data.shape, dtype=data.dtype).to(device)
        dropped = (torch.rand(batch) < self.drop_prob).to(device)
        class_conditioned = getattr(network, "class_embedding", None) is not None
        if self.drop == "sequence":
            sequence = torch.where(dropped, torch.full_like(sequence, network.sequence_null), sequence)
        elif not class_conditioned:
            raise ValueError("FlowTrainStep(drop='class') needs a network with a class embedding (stage 2)")
        else:
            label = torch.where(dropped, torch.full_like(label, network.class_null), label)
        label_in = label if class_conditioned else None
        engine.state.output = output = {"t": t, "dropped": dropped, "sequence": sequence, "label": label}

        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        x_t = interpolate(noise, data, t)
        with _autocast(engine):
            velocity = engine.network(x_t, t, sequence, label_in)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        loss = flow_matching_loss(velocity, noise, data)
        output[Keys.LOSS] = loss
        engine.fire_event(IterationEvents.LOSS_COMPLETED)

        output["grad_norm"] = _backward_step(engine, loss, self.max_grad_norm)
        output[Keys.LOSS] = loss.detach()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return output


class FlowEvalStep:
    """Conditional flow-matching loss of a batch without gradients: the ``iteration_update`` of an evaluator.

    ``t`` and the noise of the ``i``-th batch of every validation come from a CPU generator seeded
    with ``(seed, i)``, so repeated validations of one model give one loss, and the losses of two
    epochs differ only by the model. No condition is dropped. Output: ``loss`` (scalar), ``t``.

    Args:
        seed: seed of the validation draws.
        time_sampling: one of :data:`TIME_SAMPLING` (the trainer's, so the loss weighs times alike).
        time_location: location of the logit-normal distribution.
        time_scale: scale of the logit-normal distribution.
    """

    def __init__(
        self, seed: int = 0, time_sampling: str = "logit_normal", time_location: float = 0.0, time_scale: float = 1.0
    ) -> None:
        if time_sampling not in TIME_SAMPLING:
            raise ValueError(f"FlowEvalStep: unknown time sampling {time_sampling!r}; expected one of {TIME_SAMPLING}")
        self.seed = int(seed)
        self.time_sampling = time_sampling
        self.time_location = float(time_location)
        self.time_scale = float(time_scale)

    def __call__(self, engine: SupervisedEvaluator, batchdata: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Run one batch; returns the iteration output.

        Raises:
            ValueError: if ``batchdata`` is None.
        """
        if batchdata is None:
            raise ValueError("FlowEvalStep: no batch data for this iteration")
        data, _, (sequence, label), _ = engine.prepare_batch(
            batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs
        )
        network = _unwrap(engine.network)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(engine.state.iteration))
        batch = data.shape[0]
        t = sample_times(batch, self.time_sampling, self.time_location, self.time_scale, generator=generator)
        noise = torch.randn(data.shape, generator=generator).to(data.device)
        t = t.to(data.device)
        label_in = label if getattr(network, "class_embedding", None) is not None else None
        with engine.mode(engine.network), _autocast(engine), torch.no_grad():
            velocity = engine.network(interpolate(noise, data, t), t, sequence, label_in)
        engine.state.output = output = {Keys.LOSS: flow_matching_loss(velocity, noise, data), "t": t}
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return output


def stage2_parameter_groups(
    network: nn.Module, learning_rate: float, pretrained_learning_rate: float
) -> list[dict[str, Any]]:
    """Optimizer parameter groups of stage 2: ``[new conditioning, pretrained]`` (paper 2.3.2).

    Group 0 holds :meth:`~monai_cmri.networks.nets.flow_unet.FlowUNet.new_conditioning_parameters`
    at ``learning_rate``; group 1 the stage-1 parameters at ``pretrained_learning_rate``.
    :class:`TwoPhaseFinetuning` sets group 1's rate to 0 during phase 1.

    Raises:
        ValueError: if the network has no new conditioning parameters (a stage-1 network).
    """
    network = _unwrap(network)
    new = list(network.new_conditioning_parameters())
    if not new:
        raise ValueError("stage2_parameter_groups: the network has no class embedding (build it with num_classes=3)")
    return [
        {"params": new, "lr": float(learning_rate), "name": "new conditioning"},
        {"params": list(network.pretrained_parameters()), "lr": float(pretrained_learning_rate), "name": "pretrained"},
    ]


class TwoPhaseFinetuning:
    """Stage 2's two phases, set at the start of every epoch from the epoch number (paper 2.3.2).

    Epochs ``1..phase1_epochs`` (phase 1): the stage-1 parameters have ``requires_grad=False`` and
    learning rate 0, so they get no gradient and no optimizer update (weight decay included); only
    the class embedding trains. Later epochs (phase 2): everything trains, the stage-1 parameters at
    ``pretrained_learning_rate``. The phase is a function of the epoch, so a resumed run is in the
    phase an uninterrupted one would be.

    Args:
        network: the stage-2 network (a DDP wrapper is unwrapped).
        optimizer: built on :func:`stage2_parameter_groups`.
        phase1_epochs: epochs of phase 1 (0: phase 2 from the start).
        pretrained_learning_rate: learning rate of the stage-1 parameters in phase 2.

    Raises:
        ValueError: if the optimizer's groups are not those of :func:`stage2_parameter_groups`.
    """

    def __init__(
        self, network: nn.Module, optimizer: torch.optim.Optimizer, phase1_epochs: int, pretrained_learning_rate: float
    ) -> None:
        names = [group.get("name") for group in optimizer.param_groups]
        if names != ["new conditioning", "pretrained"]:
            raise ValueError(f"TwoPhaseFinetuning needs the groups of stage2_parameter_groups, got {names}")
        if phase1_epochs < 0:
            raise ValueError(f"TwoPhaseFinetuning: phase1_epochs must be >= 0, got {phase1_epochs}")
        self.network = _unwrap(network)
        self.optimizer = optimizer
        self.phase1_epochs = int(phase1_epochs)
        self.pretrained_learning_rate = float(pretrained_learning_rate)
        self.phase: int | None = None

    def attach(self, engine: Engine) -> None:
        """Set the phase at the start of every epoch."""
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        """Put the network and optimizer into the phase of the epoch that starts."""
        self.set_phase(1 if engine.state.epoch <= self.phase1_epochs else 2)

    def set_phase(self, phase: int) -> None:
        """Freeze (phase 1) or unfreeze (phase 2) the stage-1 parameters."""
        frozen = phase == 1
        for parameter in self.network.pretrained_parameters():
            parameter.requires_grad_(not frozen)
            if frozen:
                parameter.grad = None
        self.optimizer.param_groups[1]["lr"] = 0.0 if frozen else self.pretrained_learning_rate
        self.phase = phase


def load_stage1(network: nn.Module, checkpoint: str | os.PathLike[str], device: str | torch.device | None = None) -> nn.Module:
    """Load stage-1 weights into a stage-2 network exactly and move it to ``device`` (paper 2.3.2).

    Every stage-1 tensor must match by name and shape; the class embedding keeps its zero
    initialisation, so the stage-2 network computes the stage-1 velocity until it trains.

    Args:
        network: a :class:`~monai_cmri.networks.nets.flow_unet.FlowUNet` with ``num_classes`` set.
        checkpoint: the stage-1 ``model.pt`` (a state dict; loaded with ``weights_only=True``).
        device: where the network goes.

    Returns:
        ``network``.

    Raises:
        FileNotFoundError: if the checkpoint does not exist (the message says to train stage 1).
        ValueError: if it is not a stage-1 state of this network (names the file and the keys).
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no stage-1 checkpoint; train the flow_stage1 bundle first (or set stage1_ckpt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors have many types; all mean "not a weights file"
        first = (str(error).strip().splitlines() or [""])[0][:160]
        raise ValueError(f"{path}: not a readable weights-only checkpoint ({type(error).__name__}: {first})") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a network state_dict, got {type(state).__name__}")
    try:
        network.load_stage1(state)
    except ValueError as error:
        raise ValueError(str(error).replace("the given state dict", str(path), 1)) from None
    return network.to(device) if device is not None else network
