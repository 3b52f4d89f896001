"""GQN fidelity to the paper: the inference core sees the canvas, the likelihood stays float32
under bf16 autocast, every parameter gets a gradient for every L (DDP without
find_unused_parameters), checkpoints older than the canvas input load as they were trained, and
the training loss traces into one torch.compile graph."""

from __future__ import annotations

import json

import pytest
import torch

from worldmodel.models.gqn import GQN
from worldmodel.models.gqn_config import GQNConfig

SIZE = 16


def tiny(**kw) -> GQNConfig:
    base = dict(
        image_size=SIZE,
        r_channels=16,
        hidden_channels=8,
        z_channels=2,
        generation_steps=3,
        kernel_size=3,
        position_scale=1.0,
    )
    base.update(kw)
    return GQNConfig(**base)


def batch(b: int = 2, k: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "context_frames": torch.rand(b, k, 3, SIZE, SIZE, generator=g),
        "context_viewpoints": torch.randn(b, k, 7, generator=g),
        "query_frame": torch.rand(b, 3, SIZE, SIZE, generator=g),
        "query_viewpoint": torch.randn(b, 7, generator=g),
    }


@pytest.mark.parametrize("shared", [True, False])
def test_inference_core_receives_the_downsampled_canvas_and_the_likelihood_reaches_it(shared):
    torch.manual_seed(0)
    model = GQN(tiny(shared_core=shared))
    gen = model.generator
    assert gen.canvas_input
    seen = []
    index = 0 if shared else 1
    hook = gen.canvas_downsamplers[index].register_forward_hook(lambda m, i, o: seen.append((i[0].shape, o.shape)))
    out = model.loss(batch())
    hook.remove()
    hid = model.config.hidden_channels
    # the canvas u_{l-1} [B, hid, H, W] enters, the latent grid [B, hid, H/4, W/4] leaves (once per step after the
    # first)
    assert seen and all(i == (2, hid, SIZE, SIZE) and o == (2, hid, SIZE // 4, SIZE // 4) for i, o in seen)
    assert len(seen) == (model.config.generation_steps - 1 if shared else 1)
    # the inference core's input convolution takes (h^g, downsampled u, h^e)
    assert gen.inference_cores[index].recurrent.in_channels == 3 * hid
    # a gradient flows from the likelihood alone to the canvas path through the posterior
    out["nll"].backward()
    grad = gen.canvas_downsamplers[index].weight.grad
    assert grad is not None and torch.any(grad != 0)


def test_the_first_release_form_has_no_canvas_input():
    model = GQN(tiny(inference_canvas="none", shared_core=False))
    assert not model.generator.canvas_input
    assert not any("canvas_downsamplers" in n for n, _ in model.named_parameters())
    assert model.generator.inference_cores[1].recurrent.in_channels == 2 * model.config.hidden_channels
    with pytest.raises(ValueError, match="inference_canvas.*downsampled"):
        tiny(inference_canvas="full")


def test_likelihood_mean_is_float32_under_bf16_autocast():
    torch.manual_seed(0)
    model = GQN(tiny())
    dtypes = []
    hook = model.generator.observation.register_forward_hook(lambda m, i, o: dtypes.append((i[0].dtype, o.dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.loss(batch())
    hook.remove()
    assert dtypes == [(torch.float32, torch.float32)]  # the output conv itself ran in float32
    assert out["nll"].dtype == torch.float32 and torch.isfinite(out["loss"])
    # and it equals the float32 forward of the same weights closely (only the cores ran in bf16)
    assert out["nll"].item() == pytest.approx(model.loss(batch())["nll"].item(), rel=0.05)


@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("canvas", ["downsampled", "none"])
def test_every_trainable_parameter_gets_a_gradient_for_every_L(steps, shared, canvas):
    # the condition for DistributedDataParallel with find_unused_parameters=False
    torch.manual_seed(0)
    model = GQN(tiny(generation_steps=steps, shared_core=shared, inference_canvas=canvas))
    model.loss(batch())["loss"].backward()
    unused = [
        n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))
    ]
    assert unused == []
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == (["generator.prior_head.weight"] if steps == 1 else [])


def test_checkpoints_without_the_field_load_as_the_first_release_form(tmp_path):
    from worldmodel.checkpoint import save_checkpoint
    from worldmodel.models.gqn import load_frozen

    cfg = tiny(inference_canvas="none")
    model = GQN(cfg)
    import dataclasses

    values = dataclasses.asdict(cfg)
    del values["inference_canvas"]  # a config.json written before the field existed
    path = save_checkpoint(tmp_path / "ckpt", model.state_dict(), {"learner": "gqn", "model": values, "step": 0})
    assert "inference_canvas" not in json.loads((path / "config.json").read_text())["model"]
    enc = load_frozen(str(path))  # strict load: the weights match the 'none' architecture
    assert enc.model.config.inference_canvas == "none"


def test_checkpoints_from_before_the_port_form_load_with_softplus_std_and_pixel_blocks(tmp_path):
    import dataclasses

    from worldmodel.checkpoint import save_checkpoint
    from worldmodel.models.gqn import load_frozen

    assert (tiny().std_activation, tiny().query_input) == ("exp", "conv")  # the defaults of new configs
    cfg = tiny(std_activation="softplus", query_input="space_to_depth")
    model = GQN(cfg)
    values = dataclasses.asdict(cfg)
    del values["std_activation"], values["query_input"]  # a config.json written before the fields existed
    path = save_checkpoint(tmp_path / "ckpt", model.state_dict(), {"learner": "gqn", "model": values, "step": 0})
    enc = load_frozen(str(path))  # strict load: no query conv in the weights
    assert (enc.model.config.std_activation, enc.model.config.query_input) == ("softplus", "space_to_depth")
    assert enc.model.generator.query_downsampler is None


def test_exp_std_reads_the_head_as_a_log_variance_and_softplus_stays_the_other_option():
    from worldmodel.models.gqn_generation import _gaussian

    raw = torch.tensor([[0.5, -1.0, 2.0, -40.0]]).reshape(1, 4, 1, 1)  # mean channels 0-1, raw std channels 2-3
    mu, std = _gaussian(raw, exp_std=True)
    assert torch.equal(mu, raw[:, :2])
    assert torch.allclose(std.flatten(), torch.tensor([torch.e, torch.exp(torch.tensor(-15.0))]))  # clamped at -30
    _, soft = _gaussian(raw, exp_std=False)
    assert torch.allclose(soft.flatten(), torch.nn.functional.softplus(raw[0, 2:].flatten()) + 1e-4)
    with pytest.raises(ValueError, match="std_activation.*softplus"):
        tiny(std_activation="relu")


@pytest.mark.parametrize("shared", [True, False])
def test_query_conv_input_feeds_three_learned_channels_to_the_inference_cores(shared):
    torch.manual_seed(0)
    model = GQN(tiny(query_input="conv", std_activation="exp", shared_core=shared))
    gen = model.generator
    cfg = model.config
    assert gen.query_downsampler is not None and gen.query_downsampler.weight.shape == (3, 3, 4, 4)
    assert gen.inference_cores[0].condition.in_channels == 3 + cfg.viewpoint_dim + cfg.r_channels
    blocks = GQN(tiny(query_input="space_to_depth")).generator
    assert blocks.query_downsampler is None
    assert blocks.inference_cores[0].condition.in_channels == 48 + cfg.viewpoint_dim + cfg.r_channels
    model.loss(batch())["nll"].backward()  # the likelihood reaches the query conv through the posterior
    assert torch.any(gen.query_downsampler.weight.grad != 0)
    with pytest.raises(ValueError, match="query_input.*space_to_depth"):
        tiny(query_input="pixels")


def test_the_training_loss_traces_into_one_graph():
    torch.manual_seed(0)
    model = GQN(tiny(generation_steps=2, shared_core=False))
    explanation = torch._dynamo.explain(model.loss)(batch())
    assert explanation.graph_break_count == 0, [str(r.reason) for r in explanation.break_reasons]
    assert explanation.graph_count == 1


@pytest.mark.parametrize("representation", ["tower", "pyramid"])
def test_channels_last_survives_the_viewpoint_concatenation(representation):
    torch.manual_seed(0)
    model = GQN(tiny(representation=representation)).to(memory_format=torch.channels_last)
    b = batch()
    views = model._viewpoints(b["context_viewpoints"]).flatten(0, 1)
    frames = b["context_frames"].movedim(-3, -1).contiguous().movedim(-1, -3)  # to_device's channels-last 5-d layout
    x = frames.flatten(0, 1)
    assert x.is_contiguous(memory_format=torch.channels_last)
    seen = []
    for m in model.psi.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
    out = model.psi(x, views)
    convs = [t for t in seen if t.dim() == 4 and min(t.shape[-2:]) > 1]
    assert convs and all(t.is_contiguous(memory_format=torch.channels_last) for t in convs)  # every conv input
    torch.testing.assert_close(out, model.psi(b["context_frames"].flatten(0, 1).contiguous(), views))
