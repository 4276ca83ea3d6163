"""Tests of classifier-free guidance: the guidance formula, one batched pass, the interval and NFE (paper 2.3)."""

from __future__ import annotations

import pytest
import torch

from monai_cmri.flow.guidance import ClassifierFreeGuidance
from monai_cmri.flow.solvers import euler, heun, time_grid

NULL = 3  # index of the null token in the toy embedding


class ToyModel:
    """``v = (1 + t) x + e[cond]``, which records the batch size of every call."""

    def __init__(self) -> None:
        self.embedding = torch.randn(4, 2, 1, 1, generator=torch.Generator().manual_seed(0))
        self.batches: list[int] = []

    def __call__(self, x, t, cond):
        self.batches.append(x.shape[0])
        return (1 + t)[:, None, None, None] * x + self.embedding[cond]


def _inputs(batch=3):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 2, 4, 4, generator=g)
    cond = torch.tensor([0, 1, 2])[:batch]
    return x, torch.full((batch,), 0.4), cond, torch.full_like(cond, NULL)


@pytest.mark.parametrize("w", [0.0, 1.0, 2.5])
def test_guidance_formula_in_one_batched_pass(w):
    model = ToyModel()
    x, t, cond, null = _inputs()
    v = ClassifierFreeGuidance(model, cond, null, guidance_scale=w)(x, t)
    v_cond, v_null = model(x, t, cond), model(x, t, null)
    torch.testing.assert_close(v, v_null + w * (v_cond - v_null))
    if w == 1.0:
        torch.testing.assert_close(v, v_cond)
    if w == 0.0:
        torch.testing.assert_close(v, v_null)
    assert model.batches[0] == 6  # cond and null together, once


def test_nfe_without_interval_is_twice_the_solver_calls():
    model = ToyModel()
    x, _, cond, null = _inputs()
    cfg = ClassifierFreeGuidance(model, cond, null, guidance_scale=2.0)
    _, solver_nfe = heun(cfg, x, time_grid(5))
    assert solver_nfe == 10 and cfg.nfe == 20
    assert model.batches == [6] * 10
    cfg.reset()
    euler(cfg, x, time_grid(4))
    assert cfg.nfe == 8


def test_nfe_and_velocity_with_a_guidance_interval():
    model = ToyModel()
    x, _, cond, null = _inputs()
    cfg = ClassifierFreeGuidance(model, cond, null, guidance_scale=2.0, interval=(0.25, 0.75))
    _, solver_nfe = heun(cfg, x, time_grid(10))
    # Heun evaluates at t_k (k = 0..9) and t_{k+1}; 0.3..0.7 lie in the interval in both stages: 10 guided calls.
    assert solver_nfe == 20
    assert cfg.nfe == 10 * 2 + 10 * 1
    assert sorted(model.batches) == [3] * 10 + [6] * 10
    t_out = torch.full((3,), 0.9)
    torch.testing.assert_close(cfg(x, t_out), model(x, t_out, cond))


def test_samples_at_different_times_are_guided_one_by_one():
    model = ToyModel()
    x, _, cond, null = _inputs()
    cfg = ClassifierFreeGuidance(model, cond, null, guidance_scale=3.0, interval=(0.2, 0.6))
    t = torch.tensor([0.1, 0.4, 0.8])
    v = cfg(x, t)
    v_cond, v_null = model(x, t, cond), model(x, t, null)
    guided = v_null + 3.0 * (v_cond - v_null)
    torch.testing.assert_close(v, torch.stack([v_cond[0], guided[1], v_cond[2]]))
    assert cfg.nfe == 2


def test_mapping_conditions_null_only_the_class():
    seen = {}

    def model(x, t, cond):
        seen.update(cond)
        return x * cond["sequence"][:, None, None, None] + cond["label"][:, None, None, None]

    x = torch.ones(2, 2, 3, 3)
    cond = {"sequence": torch.tensor([1.0, 2.0]), "label": torch.tensor([5.0, 7.0])}
    null = {"sequence": cond["sequence"], "label": torch.tensor([0.0, 0.0])}
    v = ClassifierFreeGuidance(model, cond, null, guidance_scale=2.0)(x, torch.full((2,), 0.5))
    torch.testing.assert_close(seen["label"], torch.tensor([5.0, 7.0, 0.0, 0.0]))
    # v = v_null + 2 (v_cond - v_null) = s + 2 * label
    torch.testing.assert_close(v[:, 0, 0, 0], torch.tensor([1.0 + 10.0, 2.0 + 14.0]))


def test_bad_arguments_are_rejected():
    model = ToyModel()
    x, t, cond, null = _inputs()
    with pytest.raises(ValueError, match="null_cond of shape"):
        ClassifierFreeGuidance(model, cond, null[:2], guidance_scale=1.0)
    with pytest.raises(ValueError, match="interval"):
        ClassifierFreeGuidance(model, cond, null, guidance_scale=1.0, interval=(0.8, 0.2))
    with pytest.raises(ValueError, match="both tensors or both mappings"):
        ClassifierFreeGuidance(model, {"label": cond}, null, guidance_scale=1.0)
    with pytest.raises(ValueError, match="keys"):
        ClassifierFreeGuidance(model, {"label": cond}, {"class": null}, guidance_scale=1.0)
    with pytest.raises(ValueError, match="batch 3"):
        ClassifierFreeGuidance(model, cond, null, guidance_scale=1.0)(x[:2], t[:2])
