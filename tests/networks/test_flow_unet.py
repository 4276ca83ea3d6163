"""Tests of the conditional flow-matching U-Net (small profile, CPU)."""

from __future__ import annotations

import pytest
import torch

from monai_cmri.data.dataset import LABELS
from monai_cmri.data.sequences import SEQUENCES
from monai_cmri.networks.nets import CLASS_NULL, CLASS_TOKENS, SEQUENCE_NULL, TIME_SCALE, FlowUNet

SMALL = {
    "channels": (8, 16),
    "attention_levels": (False, True),
    "num_res_blocks": 1,
    "norm_num_groups": 4,
    "num_head_channels": 8,
}


def small(seed: int = 0, perturb: bool = False, **kwargs) -> FlowUNet:
    """A small network; ``perturb`` moves every weight off its initialisation.

    MONAI zero-initialises the output convolution, so at initialisation the velocity is 0 for every
    input and conditioning: comparisons of outputs need the perturbed weights.
    """
    torch.manual_seed(seed)
    net = FlowUNet(**{**SMALL, **kwargs}).eval()
    if perturb:
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * torch.randn_like(p))
    return net


def inputs(batch: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 2, 48, 48, generator=g)
    t = torch.rand(batch, generator=g)
    sequence = torch.randint(0, len(SEQUENCES), (batch,), generator=g)
    return x, t, sequence


def test_tokens_follow_the_data_module():
    assert SEQUENCE_NULL == len(SEQUENCES) == 5
    assert CLASS_TOKENS[:2] == LABELS[:2] and LABELS[2] == "unlabeled" and CLASS_TOKENS[2] == "unknown"
    assert CLASS_NULL == 3 and CLASS_TOKENS.index("unknown") != CLASS_NULL


def test_output_shape_stage1_and_stage2():
    x, t, sequence = inputs()
    with torch.no_grad():
        assert small()(x, t, sequence).shape == (4, 2, 48, 48)
        label = torch.tensor([0, 1, 2, CLASS_NULL])
        assert small(num_classes=3)(x, t, sequence, label).shape == (4, 2, 48, 48)


def test_default_gpu_profile_divides_the_latent():
    net = FlowUNet()
    assert 48 % net.downsample_factor == 0 and 48 // net.downsample_factor == 12
    assert tuple(net.block_out_channels) == (128, 256, 256)


def test_nearby_times_have_distinct_finite_embeddings():
    net = small()
    t = torch.tensor([0.0, 0.5, 0.501, 1.0 - 1e-3, 1.0])
    sequence = torch.zeros(5, dtype=torch.long)
    with torch.no_grad():
        emb = net.conditioning(t, sequence, None)
    assert torch.isfinite(emb).all()
    assert emb.dtype == torch.float32
    # t and t + 1e-3 are one DDPM step apart on MONAI's 0-1000 scale: clearly distinct embeddings
    assert (emb[1] - emb[2]).norm() > 1e-3 * emb[1].norm()
    assert (emb[3] - emb[4]).norm() > 1e-3 * emb[4].norm()
    assert TIME_SCALE == 1000.0


def test_time_embedding_stays_fp32_under_autocast():
    net = small(perturb=True)
    x, t, sequence = inputs()
    t = torch.full((4,), 0.5) + torch.arange(4) * 1e-3
    with torch.no_grad():
        reference = net.conditioning(t, sequence, None)
        seen: list[torch.Tensor] = []
        original = net.conditioning

        def spy(*args):
            out = original(*args)
            seen.append(out)
            return out

        net.conditioning = spy  # type: ignore[method-assign]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            v = net(x, t, sequence)
    assert seen[0].dtype == torch.float32
    torch.testing.assert_close(seen[0], reference, rtol=0, atol=0)
    # all four nearby times keep distinct embeddings (bf16 would merge some of them)
    assert torch.unique(seen[0], dim=0).shape[0] == 4
    assert v.shape == (4, 2, 48, 48) and torch.isfinite(v.float()).all()


def test_null_tokens_change_the_output():
    net = small(perturb=True, num_classes=3)
    x, t, _ = inputs(batch=1)
    with torch.no_grad():

        def v(sequence: int, label: int) -> torch.Tensor:
            return net(x, t, torch.tensor([sequence]), torch.tensor([label]))

        assert not torch.allclose(v(0, 0), v(SEQUENCE_NULL, 0))
        assert not torch.allclose(v(0, 2), v(0, CLASS_NULL))
        # "unknown" is a real token of its own, not the null and not another class
        assert not torch.allclose(v(0, 2), v(0, 0))


def test_class_embedding_starts_at_zero():
    net = small(num_classes=3)
    assert net.class_embedding is not None and torch.count_nonzero(net.class_embedding.weight) == 0
    assert small().class_embedding is None


def test_stage2_loaded_from_stage1_gives_the_stage1_velocity(tmp_path):
    stage1 = small(perturb=True)
    path = tmp_path / "stage1.pt"
    torch.save(stage1.state_dict(), path)
    x, t, sequence = inputs(batch=CLASS_NULL + 1)
    sequence[-1] = SEQUENCE_NULL
    for source in (stage1.state_dict(), path):
        stage2 = small(seed=7, num_classes=3)
        stage2.load_stage1(source)
        with torch.no_grad():
            expected = stage1(x, t, sequence)
            assert expected.abs().max() > 0
            for label in range(CLASS_NULL + 1):
                got = stage2(x, t, sequence, torch.full((x.shape[0],), label))
                assert torch.equal(got, expected)


def test_mismatched_stage1_state_raises_naming_keys(tmp_path):
    stage2 = small(num_classes=3)
    wider = small(channels=(8, 24), norm_num_groups=4)
    path = tmp_path / "wider.pt"
    torch.save(wider.state_dict(), path)
    with pytest.raises(ValueError, match=r"wider\.pt.*shape differs"):
        stage2.load_stage1(path)
    partial = dict(small().state_dict())
    del partial["sequence_embedding.weight"]
    with pytest.raises(ValueError, match=r"missing: sequence_embedding\.weight"):
        stage2.load_stage1(partial)
    with pytest.raises(ValueError, match=r"unexpected: class_embedding\.weight"):
        stage2.load_stage1(small(num_classes=3).state_dict())
    with pytest.raises(ValueError, match="not a stage-1 state"):
        stage2.load_stage1(small(num_sequences=4).state_dict())


def test_phase1_freeze_trains_only_the_class_embedding():
    stage2 = small(seed=3, num_classes=3)
    stage2.load_stage1(small(perturb=True).state_dict())
    new = stage2.new_conditioning_parameters()
    assert new == [stage2.class_embedding.weight]
    assert small().new_conditioning_parameters() == []
    pretrained = stage2.pretrained_parameters()
    assert len(pretrained) + len(new) == len(list(stage2.parameters()))
    assert not {id(p) for p in pretrained} & {id(p) for p in new}

    for p in pretrained:
        p.requires_grad_(False)
    x, t, sequence = inputs()
    label = torch.tensor([0, 0, 2, 1])
    stage2(x, t, sequence, label).square().mean().backward()
    assert all(p.grad is None for p in pretrained)
    grad = stage2.class_embedding.weight.grad
    assert grad is not None
    used = grad.abs().sum(dim=1) > 0
    assert used.tolist() == [True, True, True, False]  # the null row was not used


@pytest.mark.parametrize(
    "x, t, sequence, label, match",
    [
        (torch.randn(2, 2, 48), torch.rand(2), torch.tensor([0, 1]), torch.tensor([0, 1]), "x: expected shape"),
        (torch.randn(2, 3, 48, 48), torch.rand(2), torch.tensor([0, 1]), torch.tensor([0, 1]), "x: expected shape"),
        (torch.randn(2, 2, 47, 48), torch.rand(2), torch.tensor([0, 1]), torch.tensor([0, 1]), "divisible by 2"),
        (torch.randn(2, 2, 48, 48), torch.tensor([0.2, 1.5]), torch.tensor([0, 1]), torch.tensor([0, 1]), r"\[0, 1\]"),
        (torch.randn(2, 2, 48, 48), torch.tensor([-0.1, 0.5]), torch.tensor([0, 1]), torch.tensor([0, 1]), r"\[0, 1\]"),
        (torch.randn(2, 2, 48, 48), torch.rand(3), torch.tensor([0, 1]), torch.tensor([0, 1]), "t: expected"),
        (torch.randn(2, 2, 48, 48), torch.rand(2), torch.tensor([0, 6]), torch.tensor([0, 1]), r"sequence: .*\[0, 5\]"),
        (torch.randn(2, 2, 48, 48), torch.rand(2), torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), "sequence: .*long"),
        (torch.randn(2, 2, 48, 48), torch.rand(2), torch.tensor([0, 1]), torch.tensor([0, 4]), r"label: .*\[0, 3\]"),
        (torch.randn(2, 2, 48, 48), torch.rand(2), torch.tensor([0, 1]), None, "label: required"),
    ],
)
def test_invalid_inputs_raise(x, t, sequence, label, match):
    with pytest.raises(ValueError, match=match):
        small(num_classes=3)(x, t, sequence, label)


def test_stage1_rejects_a_label():
    x, t, sequence = inputs()
    with pytest.raises(ValueError, match="no class embedding"):
        small()(x, t, sequence, torch.zeros(4, dtype=torch.long))
