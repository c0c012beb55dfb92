"""A 2-D UNet's text add-embedding (addition_embed_type "text") survives AnimateDiff inflation in vdgraph.

diffusers' UNetMotionModel drops it (from_unet2d does not carry it, its forward ignores "text");
`vdgraph_video.ops.motion_text.restore_text_embedding` gives it back. With motion modules that add nothing (zeroed
output projections), every frame through the motion UNet must equal the 2-D UNet on that frame exactly: that is
the image model restored. A UNet without the add-embedding is left exactly as diffusers builds it (the AnimateDiff
parity tests, tests/test_video_animatediff*.py, hold that bit-exact against AnimateDiffPipeline).
"""

from __future__ import annotations

import copy

import pytest
import torch

from vdgraph_video.motion_adapter import MotionAdapterHandle, inflate
from vdgraph_video.ops.motion_text import HOOKED, restore_text_embedding
from vdgraph_video.values import UNetHandle

pytestmark = pytest.mark.usefixtures("torch_threads")

WIDTH = 32


def text_unet(addition: str | None = "text"):
    """A tiny UNet2DConditionModel with (or without) the text add-embedding, seeded, its add-embedding's output
    scaled up so that dropping it changes the prediction clearly."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=WIDTH, attention_head_dim=4,
        addition_embed_type=addition, addition_embed_type_num_heads=4,
    ).eval()
    return unet


def adapter(zero: bool):
    from diffusers import MotionAdapter

    torch.manual_seed(1)
    module = MotionAdapter(block_out_channels=(16, 32), motion_layers_per_block=1, motion_norm_num_groups=8,
                           motion_num_attention_heads=2, motion_max_seq_length=8).eval()
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "proj_out" in name:
                p.zero_() if zero else p.normal_(0, 0.2)
    return module


def motion_model(unet, motion, restore: bool = True):
    from diffusers import UNetMotionModel

    model = UNetMotionModel.from_unet2d(unet, motion).eval()
    return restore_text_embedding(model, unet) if restore else model


def inputs(batch: int, frames: int, per_frame_states: bool):
    g = torch.Generator().manual_seed(2)
    sample = torch.randn((batch, 4, frames, 8, 8), generator=g)  # (B, C, F, H, W)
    rows = batch * frames if per_frame_states else batch
    states = torch.randn((rows, 7, WIDTH), generator=g)  # (B*F or B, L, D)
    return sample, states


@torch.no_grad()
def test_one_frame_through_the_motion_unet_is_the_image_model():
    unet, motion = text_unet(), adapter(zero=True)
    model = motion_model(unet, motion)
    sample, states = inputs(batch=2, frames=1, per_frame_states=False)
    t = torch.tensor(500)
    expected = unet(sample[:, :, 0], t, states).sample  # (B, C, H, W)
    got = model(sample, t, encoder_hidden_states=states).sample[:, :, 0]
    assert torch.equal(got, expected), (got - expected).abs().max()
    # without the restoration (diffusers' from_unet2d as it is) the same frame is not the image model's
    plain = motion_model(unet, motion, restore=False)(sample, t, encoder_hidden_states=states).sample[:, :, 0]
    assert (plain - expected).abs().max() > 1e-3


@torch.no_grad()
def test_per_frame_states_give_each_frame_its_own_embedding():
    """Prompt travel / FreeNoise prompts: one text state per frame, (B*F, L, D). One clip of 3 frames with zeroed
    motion modules is the 2-D UNet on the 3 frames as a batch, each with its own state, to 1e-6: the 2-D UNet
    embeds the timestep once per frame row, the motion UNet once per clip and repeats it (diffusers' order), and a
    1-row and a 3-row matmul round differently (diffusers' inflation of a UNet without the add-embedding differs
    from the 2-D UNet by the same ~1e-6 here)."""
    unet, motion = text_unet(), adapter(zero=True)
    model = motion_model(unet, motion)
    sample, states = inputs(batch=1, frames=3, per_frame_states=True)
    t = torch.tensor(700)
    expected = unet(sample[0].permute(1, 0, 2, 3), t, states).sample  # (F, C, H, W)
    got = model(sample, t, encoder_hidden_states=states).sample[0].permute(1, 0, 2, 3)
    assert (got - expected).abs().max() <= 1e-6, (got - expected).abs().max()
    plain = motion_model(unet, motion, restore=False)(sample, t, encoder_hidden_states=states).sample
    assert (plain[0].permute(1, 0, 2, 3) - expected).abs().max() > 1e-3  # the add-embedding matters per frame


@torch.no_grad()
def test_text_states_must_be_one_per_frame():
    model = motion_model(text_unet(), adapter(zero=False))
    sample, states = inputs(batch=2, frames=3, per_frame_states=False)
    with pytest.raises(ValueError, match="one text state per frame"):
        model(sample, torch.tensor(300), encoder_hidden_states=states)


@torch.no_grad()
def test_a_deep_copy_keeps_its_own_route():
    unet, motion = text_unet(), adapter(zero=False)
    model = motion_model(unet, motion)
    sample, states = inputs(batch=1, frames=2, per_frame_states=True)
    t = torch.tensor(100)
    before = model(sample, t, encoder_hidden_states=states).sample
    twin = copy.deepcopy(model)
    assert getattr(twin, HOOKED).model is twin and getattr(twin, HOOKED) is not getattr(model, HOOKED)
    with torch.no_grad():
        model.add_embedding.norm2.bias.add_(1.0)  # changing the original must not change the copy
    assert not torch.equal(model(sample, t, encoder_hidden_states=states).sample, before)
    assert torch.equal(twin(sample, t, encoder_hidden_states=states).sample, before)


def test_the_add_embedding_is_frozen_with_the_image_weights():
    unet = text_unet()
    model = motion_model(unet, adapter(zero=True))
    model.freeze_unet2d_params()
    assert not any(p.requires_grad for p in model.add_embedding.parameters())
    assert all(torch.equal(a, b) for a, b in zip(model.add_embedding.state_dict().values(),
                                                  unet.add_embedding.state_dict().values(), strict=True))
    assert model.add_embedding is not unet.add_embedding  # a copy: the 2-D UNet is never changed


def test_a_unet_without_the_text_add_embedding_is_left_as_diffusers_builds_it():
    unet = text_unet(addition=None)
    model = motion_model(unet, adapter(zero=False))
    assert not hasattr(model, HOOKED) and not hasattr(model, "add_embedding")
    assert not model._forward_pre_hooks and not any(b._forward_pre_hooks for b in model.down_blocks)


@torch.no_grad()
def test_video_apply_motion_adapter_restores_it():
    unet, motion = text_unet(), adapter(zero=True)
    inflated = inflate(UNetHandle(module=unet), MotionAdapterHandle(motion))
    assert hasattr(inflated.module, HOOKED)
    sample, states = inputs(batch=1, frames=1, per_frame_states=False)
    t = torch.tensor(900)
    assert torch.equal(inflated.module(sample, t, encoder_hidden_states=states).sample[:, :, 0],
                       unet(sample[:, :, 0], t, states).sample)


# The text route into the motion modules (MotionTextRoute): vdgraph's, for adapters trained with one (shapes-64-motion).


def routed(unet, motion, scale: float = 0.0):
    """A motion UNet with a text route whose output maps are 0 (a fresh route) or seeded normal(0, scale)."""
    from vdgraph_video.ops.motion_text import MotionTextRoute, attach_text_route

    torch.manual_seed(3)
    route = MotionTextRoute.for_motion_modules(motion, WIDTH, width=16).eval()
    if scale:
        with torch.no_grad():
            for p in route.to_modules.parameters():
                p.normal_(0, scale)
    return attach_text_route(motion_model(unet, motion), route), route


@torch.no_grad()
def test_a_fresh_text_route_changes_nothing():
    unet, motion = text_unet(), adapter(zero=False)
    sample, states = inputs(batch=2, frames=3, per_frame_states=True)
    t = torch.tensor(400)
    expected = motion_model(unet, motion)(sample, t, encoder_hidden_states=states).sample
    model, _ = routed(unet, motion)
    assert torch.equal(model(sample, t, encoder_hidden_states=states).sample, expected)


@torch.no_grad()
def test_the_text_route_makes_the_motion_modules_read_the_text_per_clip():
    """Two clips in one batch, each its own caption: each clip's prediction is what it is alone (the route's
    vectors go to the rows of their own clip), and another caption changes it."""
    unet, motion = text_unet(), adapter(zero=False)
    model, _ = routed(unet, motion, scale=0.5)
    sample, states = inputs(batch=2, frames=3, per_frame_states=True)
    t = torch.tensor(600)
    both = model(sample, t, encoder_hidden_states=states).sample
    for clip in range(2):
        alone = model(sample[clip:clip + 1], t, encoder_hidden_states=states[clip * 3:(clip + 1) * 3]).sample
        assert (alone - both[clip:clip + 1]).abs().max() <= 1e-5
    # what the route adds depends on the text: under the other clip's text it adds something else
    plain = motion_model(unet, motion)
    swapped = torch.cat([states[3:], states[:3]])

    def added(text):
        return model(sample, t, encoder_hidden_states=text).sample - plain(sample, t, encoder_hidden_states=text).sample

    assert added(states).abs().max() > 1e-2
    assert (added(swapped) - added(states)).abs().max() > 1e-2


@torch.no_grad()
def test_the_text_route_under_split_inference_is_the_same():
    """diffusers' FreeNoise split inference calls every motion module's proj_in on consecutive slices of its rows
    (pixels of several clips); the route adds each row its own clip's vector whatever the slice (to 1e-5: a split
    matmul rounds differently)."""
    from vdgraph_video.ops.free_noise import installed_split_inference

    unet, motion = text_unet(), adapter(zero=False)
    model, _ = routed(unet, motion, scale=0.5)
    sample, states = inputs(batch=2, frames=3, per_frame_states=True)
    t = torch.tensor(250)
    whole = model(sample, t, encoder_hidden_states=states).sample
    with installed_split_inference(model, 5, 2):  # 5 rows per slice: slices straddle the clips' boundary
        split = model(sample, t, encoder_hidden_states=states).sample
    assert (split - whole).abs().max() <= 1e-5, (split - whole).abs().max()


@torch.no_grad()
def test_a_deep_copy_keeps_its_own_text_route():
    from vdgraph_video.ops.motion_text import ROUTED

    unet, motion = text_unet(), adapter(zero=False)
    model, route = routed(unet, motion, scale=0.5)
    sample, states = inputs(batch=1, frames=2, per_frame_states=True)
    t = torch.tensor(100)
    before = model(sample, t, encoder_hidden_states=states).sample
    twin = copy.deepcopy(model)
    assert getattr(twin, ROUTED).model is twin
    route.norm.bias.add_(1.0)  # changing the original's route must not change the copy
    assert not torch.equal(model(sample, t, encoder_hidden_states=states).sample, before)
    assert torch.equal(twin(sample, t, encoder_hidden_states=states).sample, before)


def test_a_text_route_saves_and_loads_beside_the_adapter(tmp_path):
    """The folder stays a diffusers MotionAdapter (which ignores the two route files); vdgraph's loader loads both
    and video.apply_motion_adapter attaches a copy of the route."""
    from diffusers import MotionAdapter

    from vdgraph_video.motion_adapter import load_motion_adapter
    from vdgraph_video.ops.motion_text import ROUTED

    unet, motion = text_unet(), adapter(zero=False)
    model, route = routed(unet, motion, scale=0.5)
    motion.save_pretrained(str(tmp_path), safe_serialization=True)
    route.save(tmp_path)
    MotionAdapter.from_pretrained(str(tmp_path), use_safetensors=True)  # still diffusers' folder
    handle = load_motion_adapter(str(tmp_path), torch.device("cpu"), torch.float32)
    assert handle.text_route is not None
    inflated = inflate(UNetHandle(module=unet), handle).module
    assert hasattr(inflated, ROUTED) and inflated.motion_text_route is not handle.text_route
    sample, states = inputs(batch=1, frames=3, per_frame_states=True)
    t = torch.tensor(800)
    with torch.no_grad():
        assert torch.equal(inflated(sample, t, encoder_hidden_states=states).sample,
                           model(sample, t, encoder_hidden_states=states).sample)


def test_a_broken_text_route_is_refused_naming_the_folder(tmp_path):
    import json

    from vdgraph_video.loading import ModelFolderError
    from vdgraph_video.motion_adapter import load_motion_adapter
    from vdgraph_video.ops.motion_text import TEXT_ROUTE_CONFIG, TEXT_ROUTE_WEIGHTS, MotionTextRoute

    motion = adapter(zero=False)
    motion.save_pretrained(str(tmp_path), safe_serialization=True)

    def refused(match: str) -> None:
        with pytest.raises(ModelFolderError, match=match) as info:
            load_motion_adapter(str(tmp_path), torch.device("cpu"), torch.float32)
        assert str(tmp_path) in str(info.value)

    route = MotionTextRoute.for_motion_modules(motion, WIDTH, width=16)
    route.save(tmp_path)
    (tmp_path / TEXT_ROUTE_WEIGHTS).unlink()
    refused(f"half there \\({TEXT_ROUTE_WEIGHTS} is missing")
    route.save(tmp_path)  # a config that does not describe its weights
    config = json.loads((tmp_path / TEXT_ROUTE_CONFIG).read_text())
    (tmp_path / TEXT_ROUTE_CONFIG).write_text(json.dumps({**config, "width": 8}))
    refused("do not match")
    (tmp_path / TEXT_ROUTE_CONFIG).write_text(json.dumps({"width": 8}))
    refused("not a text-route config")
    # a whole route, made for another adapter's motion modules
    MotionTextRoute(WIDTH, 16, {"down_blocks.0.motion_modules.0": 16}).save(tmp_path)
    refused("belongs to another motion adapter")


@pytest.mark.parametrize("edit, why", [
    (lambda c: [1, 2], "it holds list, not an object"),
    (lambda c: {**c, "width": -3}, "width is -3, not a positive whole number"),
    (lambda c: {**c, "width": 16.9}, "width is 16.9"),
    (lambda c: {**c, "width": "16"}, "width is '16'"),
    (lambda c: {**c, "width": True}, "width is True"),
    (lambda c: {**c, "channels": list(c["channels"].items())}, "channels is list"),
    (lambda c: {**c, "pooling": "max"}, "unknown keys 'pooling'"),
    (lambda c: {**c, "channels": {"": 16}}, "channels names '', not a motion module's path"),
    (lambda c: {**c, "channels": {"forward": 16}}, "channels names 'forward', not a motion module's path"),
    (lambda c: {**c, "width": 10**9}, "token.0.weight is \\[16, 32\\], the config asks for \\[1000000000, 32\\]"),
], ids=["list", "negative", "fraction", "string", "bool", "pairs", "extra-key", "empty-path",
         "attribute-path", "huge"])
def test_a_text_route_config_is_read_strictly_before_any_tensor_is_made(tmp_path, edit, why):
    """Before, int() and dict() read "16", 16.9, true and a list of pairs as something else than their writer
    wrote, unknown keys were ignored, a negative width failed inside torch, and a huge width was allocated before
    the weights were compared (12.8 GB for width 10**8), and a path that is no motion module's ("", "forward")
    raised a KeyError from torch's ModuleDict inside validation: now each is refused naming the file and what it
    needs."""
    import json

    from vdgraph_video.loading import ModelFolderError
    from vdgraph_video.motion_adapter import load_motion_adapter
    from vdgraph_video.ops.motion_text import TEXT_ROUTE_CONFIG, MotionTextRoute

    motion = adapter(zero=False)
    motion.save_pretrained(str(tmp_path), safe_serialization=True)
    route = MotionTextRoute.for_motion_modules(motion, WIDTH, width=16)
    route.save(tmp_path)
    (tmp_path / TEXT_ROUTE_CONFIG).write_text(json.dumps(edit(route.config())))
    with pytest.raises(ModelFolderError, match=why) as info:
        load_motion_adapter(str(tmp_path), torch.device("cpu"), torch.float32)
    assert str(tmp_path / TEXT_ROUTE_CONFIG) in str(info.value) or "its weights do not match" in str(info.value)


@pytest.mark.parametrize("edit, why", [
    (lambda w: {k: v.to(torch.int64) for k, v in w.items()}, "norm.weight is I64, not a float dtype"),
    (lambda w: {**w, "extra": torch.zeros(2)}, "unexpected extra"),
    (lambda w: {k: v for k, v in w.items() if k != "mlp.1.bias"}, "missing mlp.1.bias"),
], ids=["int", "extra", "missing"])
def test_text_route_weights_must_be_the_configs_float_tensors(tmp_path, edit, why):
    """Integer weights were cast to float silently; now the header's tensors must be the config's, in a float
    dtype."""
    from safetensors.torch import load_file, save_file

    from vdgraph_video.loading import ModelFolderError
    from vdgraph_video.motion_adapter import load_motion_adapter
    from vdgraph_video.ops.motion_text import TEXT_ROUTE_WEIGHTS, MotionTextRoute

    motion = adapter(zero=False)
    motion.save_pretrained(str(tmp_path), safe_serialization=True)
    MotionTextRoute.for_motion_modules(motion, WIDTH, width=16).save(tmp_path)
    path = str(tmp_path / TEXT_ROUTE_WEIGHTS)
    save_file(edit(load_file(path)), path)
    with pytest.raises(ModelFolderError, match=why):
        load_motion_adapter(str(tmp_path), torch.device("cpu"), torch.float32)
