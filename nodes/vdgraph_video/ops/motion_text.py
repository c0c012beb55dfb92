"""The 2-D UNet's text add-embedding, restored in a motion UNet (AnimateDiff) built from it.

A UNet2DConditionModel with `addition_embed_type: "text"` (shapes-64's UNet, for one) adds
`add_embedding(encoder_hidden_states)` (a TextTimeEmbedding: attention pooling over every text token) to its time
embedding, so the caption reaches every ResNet block as a global scale/shift. diffusers' `UNetMotionModel` knows only
"text_time": `from_unet2d` does not carry the add-embedding over and its forward ignores "text", so inflated, such an
image model silently loses conditioning it was trained with.

`restore_text_embedding(model, unet)` gives it back without copying diffusers' forward: the motion UNet keeps a
frozen copy of the 2-D UNet's `add_embedding` (an image weight, under the 2-D UNet's name), a forward pre-hook on the
motion UNet computes `add_embedding(encoder_hidden_states)` once per call, and forward pre-hooks on its down, mid and
up blocks add it to the time embedding (`temb`) each block receives. UNet2DConditionModel adds it before anything
else reads the time embedding; the motion UNet repeats the time embedding per frame (repeat_interleave) before the
blocks, so adding the per-frame copies there is the same elementwise sum, value for value: with one text state per
frame, every frame's ResNets see exactly the 2-D UNet's embedding. The motion UNet takes one text state per frame,
(B*F, L, D) (AnimateDiffPipeline repeats the clip's state over its frames; prompt travel gives each frame its own):
each frame's add-embedding is computed from its own state.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch

HOOKED = "_vdgraph_text_embedding"  # attribute marking a motion UNet whose add-embedding is restored


class _TextEmbeddingRoute:
    """The hooks: the motion UNet's pre-hook computes the per-frame add-embedding, the blocks' pre-hooks add it to
    their `temb`. Bound methods of one object, so a deep copy of the UNet copies the route with it."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.current: torch.Tensor | None = None  # (B*F, D) during a forward call

    def before_model(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]  # (B, C, F, H, W)
        states = args[2] if len(args) > 2 else kwargs.get("encoder_hidden_states")  # (B*F or B, L, D)
        if states is None:
            raise ValueError("this motion UNet's image model conditions every block on the text (addition_embed_type "
                             "'text'): pass encoder_hidden_states")
        if isinstance(states, tuple):  # (text, image embeds) when an IP-adapter projection is on
            states = states[0]
        batch, frames = sample.shape[0], sample.shape[2]
        if states.shape[0] != batch * frames:  # the motion UNet's cross-attention takes one state per frame too
            raise ValueError(f"encoder_hidden_states has {states.shape[0]} rows for {batch} clips of {frames} frames: "
                             f"give one text state per frame ({batch * frames} rows, the clip's state repeated "
                             "over its frames as AnimateDiffPipeline does)")
        extra = module.add_embedding(states)  # (B*F, D)
        self.current = extra
        return None

    def after_model(self, module, args, output):
        self.current = None
        return None

    def before_block(self, module, args, kwargs):
        extra = self.current
        if extra is None:  # the block called on its own, outside the motion UNet's forward
            return None
        if "temb" in kwargs:
            temb = kwargs["temb"]  # (B*F, D)
            assert temb.shape == extra.shape, f"time embedding {tuple(temb.shape)} vs text {tuple(extra.shape)}"
            return args, {**kwargs, "temb": temb + extra.to(temb.dtype)}
        temb = args[1]  # the mid block takes (hidden_states, temb, ...)
        assert temb.shape == extra.shape, f"time embedding {tuple(temb.shape)} vs text {tuple(extra.shape)}"
        return (args[0], temb + extra.to(temb.dtype), *args[2:]), kwargs


def restore_text_embedding(model: torch.nn.Module, unet: torch.nn.Module) -> torch.nn.Module:
    """Give `model` (UNetMotionModel.from_unet2d(unet, ...)) the 2-D `unet`'s text add-embedding, frozen, and the
    hooks that add it to every block's time embedding; returns `model`. A UNet without addition_embed_type "text"
    leaves `model` exactly as diffusers built it (no hook, no module)."""
    if getattr(unet.config, "addition_embed_type", None) != "text":
        return model
    assert not hasattr(model, HOOKED), "the text add-embedding is already restored on this motion UNet"
    assert getattr(unet.config, "time_embedding_act_fn", None) is None, (
        "a 2-D UNet with time_embedding_act_fn applies it after the add-embedding: not supported here")
    model.add_embedding = copy.deepcopy(unet.add_embedding).requires_grad_(False)  # an image weight: frozen
    route = _TextEmbeddingRoute(model)
    model.register_forward_pre_hook(route.before_model, with_kwargs=True)
    model.register_forward_hook(route.after_model)
    for block in (*model.down_blocks, model.mid_block, *model.up_blocks):
        if block is not None:
            block.register_forward_pre_hook(route.before_block, with_kwargs=True)
    setattr(model, HOOKED, route)
    return model


TEXT_ROUTE_CONFIG = "text_route.json"
TEXT_ROUTE_WEIGHTS = "text_route.safetensors"
ROUTED = "_vdgraph_text_route"  # attribute marking a motion UNet whose motion modules read the text


class MotionTextRoute(torch.nn.Module):
    """A text route into a motion adapter's temporal modules (vdgraph's; AnimateDiff's modules have none).

    AnimateDiff's motion modules attend over frames only: what a caption says of motion ("moving left") reaches
    them only through the frozen image layers, which were never trained to carry it. The route reads the text
    states directly: every token's state goes through a small MLP to `width` features, the features are summed
    over the tokens, and a second MLP maps the sums; one linear map per motion module then turns them into a
    per-frame vector added to that module's frame tokens right after its `proj_in` (as CameraCtrl feeds camera poses
    to AnimateDiff's temporal attention). Why a sum: a motion word changes the text states at its own position
    (a causal encoder; by 8 in norm for shapes-64's, states of norm 8) and a little at every position after it; a
    mean or an untrained attention pooling dilutes that 77-fold, and a max keeps only the features the word's token
    happens to win (3 of 128 for shapes-64's, so the pooled features of "left" and "right" differed by 5%); a sum
    keeps every token's change whole and passes the gradient to every token. Every
    output map starts at zero, so a fresh route leaves the motion UNet exactly as diffusers builds it. `channels`
    maps each motion module's path in the motion UNet (`down_blocks.0.motion_modules.0`, ...) to its width.

    Saved beside a MotionAdapter's own files (`text_route.json`, `text_route.safetensors`), so the folder still
    loads in diffusers' MotionAdapter (without the route); vdgraph's video.load_motion_adapter loads both.
    """

    def __init__(self, text_dim: int, width: int, channels: dict[str, int]) -> None:
        super().__init__()
        self.text_dim, self.width, self.channels = text_dim, width, dict(channels)
        self.norm = torch.nn.LayerNorm(text_dim)
        self.token = torch.nn.Sequential(torch.nn.Linear(text_dim, width), torch.nn.SiLU(), torch.nn.Linear(width, width))
        self.mlp = torch.nn.Sequential(torch.nn.SiLU(), torch.nn.Linear(width, width), torch.nn.SiLU())
        self.to_modules = torch.nn.ModuleDict({_key(path): torch.nn.Linear(width, c) for path, c in channels.items()})
        with torch.no_grad():
            for linear in self.to_modules.values():
                linear.weight.zero_()
                linear.bias.zero_()

    def config(self) -> dict:
        return {"text_dim": self.text_dim, "width": self.width, "channels": self.channels}

    @classmethod
    def for_motion_modules(cls, model: torch.nn.Module, text_dim: int, width: int = 128) -> MotionTextRoute:
        """A fresh route for every motion module of `model` (a UNetMotionModel or a MotionAdapter: their motion
        modules have the same paths)."""
        return cls(text_dim, width, {path: m.proj_in.out_features for path, m in motion_modules(model)})

    def pooled(self, states: torch.Tensor) -> torch.Tensor:
        """(N, L, D) text states -> (N, width)."""
        return self.mlp(self.token(self.norm(states)).sum(dim=1))

    def save(self, folder) -> None:
        import json
        import pathlib

        from safetensors.torch import save_file

        folder = pathlib.Path(folder)
        (folder / TEXT_ROUTE_CONFIG).write_text(json.dumps(self.config(), indent=2, sort_keys=True) + "\n")
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(folder / TEXT_ROUTE_WEIGHTS))

    @classmethod
    def load(cls, folder) -> MotionTextRoute | None:
        """The route saved in `folder`, or None when it has none. Data only: a JSON config and safetensors, both
        checked (route_files) before a tensor is made, so a config asking for a huge width fails before it
        allocates."""
        from safetensors.torch import load_file

        config, problem = route_files(folder)
        if problem:
            raise ValueError(problem)
        if config is None:
            return None
        import pathlib

        route = cls(config["text_dim"], config["width"], config["channels"])
        route.load_state_dict(load_file(str(pathlib.Path(folder) / TEXT_ROUTE_WEIGHTS)))
        return route.eval()


ROUTE_CONFIG_HINT = ("it needs exactly text_dim, width (positive whole numbers) and channels (an object: motion "
                     "module path -> its width); re-save the route with MotionTextRoute.save")
MOTION_MODULE_PATH = re.compile(r"(?:\w+\.)*motion_modules\.\d+")  # what motion_modules() finds; "-" and "" never
ROUTE_CONFIG_KEYS = frozenset({"text_dim", "width", "channels"})  # MotionTextRoute.config()'s keys
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # safetensors' names of the dtypes a route's weights may have


def route_config_problem(config: Any) -> str | None:
    """Why the content of a text_route.json is not a route's config, or None. Strict (no int("16"), no int(16.9),
    no unknown keys): a config the loader would read another way than its writer meant must not load silently."""
    if not isinstance(config, dict):
        return f"it holds {type(config).__name__}, not an object"
    keys = set(config)
    if keys != ROUTE_CONFIG_KEYS:
        missing, unknown = sorted(ROUTE_CONFIG_KEYS - keys), sorted(keys - ROUTE_CONFIG_KEYS)
        return ", ".join(([f"missing {', '.join(missing)}"] if missing else [])
                         + ([f"unknown keys {', '.join(map(repr, unknown))}"] if unknown else []))
    for key in ("text_dim", "width"):
        value = config[key]
        if type(value) is not int or value < 1:
            return f"{key} is {value!r}, not a positive whole number"
    channels = config["channels"]
    if not isinstance(channels, dict) or not channels:
        return f"channels is {type(channels).__name__}, not an object of motion module path -> width"
    for path, width in channels.items():
        if not MOTION_MODULE_PATH.fullmatch(path):  # else it could name no module, or clash as a ModuleDict key
            return f"channels names {path!r}, not a motion module's path (such as down_blocks.0.motion_modules.0)"
        if type(width) is not int or width < 1:
            return f"channels[{path!r}] is {width!r}, not a positive whole number"
    return None


def route_files(folder) -> tuple[dict | None, str | None]:
    """(config, None) for a whole, consistent text route in `folder` (text_route.json's object, and
    text_route.safetensors holding exactly that route's tensors, of those shapes, in a float dtype), (None, None)
    when the folder has no route, (None, why) when it is broken. Reads the JSON and the safetensors header only,
    never a tensor: validation (video.load_motion_adapter's facts) asks it as the loader does."""
    import json
    import pathlib

    from safetensors import safe_open

    folder = pathlib.Path(folder)
    config_path, weights_path = folder / TEXT_ROUTE_CONFIG, folder / TEXT_ROUTE_WEIGHTS
    if not config_path.is_file() and not weights_path.is_file():
        return None, None
    if not (config_path.is_file() and weights_path.is_file()):
        missing = weights_path if config_path.is_file() else config_path
        return None, (f"{folder}: the motion adapter's text route is half there ({missing.name} is missing): "
                      f"restore it, or remove both {TEXT_ROUTE_CONFIG} and {TEXT_ROUTE_WEIGHTS}")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{config_path}: not a text-route config (not JSON: {exc}): {ROUTE_CONFIG_HINT}"
    problem = route_config_problem(config)
    if problem:
        return None, f"{config_path}: not a text-route config ({problem}): {ROUTE_CONFIG_HINT}"
    with torch.device("meta"):  # the shapes the config asks for, without allocating them
        expected = {k: tuple(v.shape) for k, v in
                    MotionTextRoute(config["text_dim"], config["width"], config["channels"]).state_dict().items()}
    try:
        with safe_open(str(weights_path), "pt") as weights:
            found = {k: (tuple(weights.get_slice(k).get_shape()), weights.get_slice(k).get_dtype())
                     for k in weights.keys()}
    except Exception as exc:  # safetensors raises its own SafetensorError (an Exception) for a broken header
        return None, (f"{weights_path}: not a safetensors file ({type(exc).__name__}: {exc}): restore it, or remove "
                      f"both {TEXT_ROUTE_CONFIG} and {TEXT_ROUTE_WEIGHTS}")
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    differences = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
                  ([f"unexpected {', '.join(unexpected[:3])}"] if unexpected else [])
    common = [k for k in expected if k in found]
    differences += [f"{k} is {list(found[k][0])}, the config asks for {list(expected[k])}" for k in common
                    if found[k][0] != expected[k]][:3]
    differences += [f"{k} is {found[k][1]}, not a float dtype" for k in common if found[k][1] not in FLOAT_DTYPES][:3]
    if differences:
        return None, (f"{weights_path}: its weights do not match {config_path.name} ({'; '.join(differences)}): "
                      "save the route's config and weights together (MotionTextRoute.save)")
    return config, None


def _key(path: str) -> str:
    return path.replace(".", "-")  # ModuleDict keys may not contain dots


def motion_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """(path, module) of every AnimateDiff motion module (anything with proj_in under a `motion_modules` list)."""
    return [(path, m) for path, m in model.named_modules()
            if path.rsplit(".", 2)[-2:-1] == ["motion_modules"] and hasattr(m, "proj_in")]


class _TextRoute:
    """The hooks of attach_text_route. The motion UNet's pre-hook pools the text once per call; each motion
    module's pre-hook turns it into that module's per-frame vectors (B, F, C) and notes the pixels per frame; the
    hook on the module's proj_in adds them to its output rows (B*H*W, F, C), row r belonging to clip r // (H*W).
    proj_in may be called on consecutive slices of the rows (diffusers' FreeNoise split inference), so the hook
    keeps an offset. Bound methods of one object that knows the model, and each hooked module carries its path
    (PATH), so a deep copy of the UNet copies the route with it."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.pooled: torch.Tensor | None = None  # (B*F, width) during a forward call
        self.clips = 0
        self.vectors: dict[str, torch.Tensor] = {}  # path -> (B, F, C) during the module's call
        self.pixels: dict[str, int] = {}
        self.offset: dict[str, int] = {}

    def before_model(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]  # (B, C, F, H, W)
        states = args[2] if len(args) > 2 else kwargs.get("encoder_hidden_states")
        if isinstance(states, tuple):
            states = states[0]
        batch, frames = sample.shape[0], sample.shape[2]
        if states is None or states.shape[0] != batch * frames:
            rows = "none" if states is None else states.shape[0]
            raise ValueError(f"this motion UNet's motion modules read the text: give one text state per frame "
                             f"({batch * frames} rows for {batch} clips of {frames} frames; got {rows})")
        self.pooled = module.motion_text_route.pooled(states)
        self.clips = batch
        return None

    def after_model(self, module, args, output):
        self.pooled, self.vectors = None, {}
        return None

    def before_module(self, module, args, kwargs):
        if self.pooled is None:  # called outside the motion UNet's forward
            return None
        path = getattr(module, PATH)
        hidden = args[0] if args else kwargs["hidden_states"]  # (B*F, C, H, W)
        vectors = self.model.motion_text_route.to_modules[_key(path)](self.pooled)  # (B*F, C)
        self.vectors[path] = vectors.reshape(self.clips, -1, vectors.shape[-1]).to(hidden.dtype)
        self.pixels[path] = hidden.shape[2] * hidden.shape[3]
        self.offset[path] = 0
        return None

    def after_proj_in(self, module, args, kwargs, output):
        path = getattr(module, PATH)
        vectors = self.vectors.get(path)
        if vectors is None:
            return None
        start = self.offset[path]
        rows = torch.arange(start, start + output.shape[0], device=output.device) // self.pixels[path]
        self.offset[path] = start + output.shape[0]
        return output + vectors[rows]  # (n, F, C) + (n, F, C)


PATH = "_vdgraph_text_route_path"


def route_mismatch(route: MotionTextRoute, model: torch.nn.Module) -> str | None:
    """Why `route` does not fit the motion modules of `model` (a MotionAdapter or a UNetMotionModel), or None."""
    found = {path: m.proj_in.out_features for path, m in motion_modules(model)}
    if found == route.channels:
        return None
    unrouted = sorted(set(found) - set(route.channels))
    unknown = sorted(set(route.channels) - set(found))
    widths = [f"{p} {route.channels[p]} vs {found[p]}" for p in sorted(set(found) & set(route.channels))
              if found[p] != route.channels[p]]
    parts = ([f"no route for {len(unrouted)} motion modules ({', '.join(unrouted[:2])}...)"] if unrouted else []) + \
            ([f"routes to {len(unknown)} modules it lacks ({', '.join(unknown[:2])}...)"] if unknown else []) + \
            ([f"other widths ({'; '.join(widths[:2])})"] if widths else [])
    return "the text route was made for other motion modules: " + ", ".join(parts)


def attach_text_route(model: torch.nn.Module, route: MotionTextRoute) -> torch.nn.Module:
    """Make `model` (a UNetMotionModel) read the text in its motion modules through `route` (kept as the submodule
    `motion_text_route`); returns `model`. The route must have been made for this layout of motion modules."""
    assert not hasattr(model, ROUTED), "this motion UNet already has a text route"
    mismatch = route_mismatch(route, model)
    if mismatch:
        raise ValueError(mismatch)
    found = dict(motion_modules(model))
    model.motion_text_route = route
    hooks = _TextRoute(model)
    model.register_forward_pre_hook(hooks.before_model, with_kwargs=True)
    model.register_forward_hook(hooks.after_model)
    for path, module in found.items():
        setattr(module, PATH, path)
        setattr(module.proj_in, PATH, path)
        module.register_forward_pre_hook(hooks.before_module, with_kwargs=True)
        module.proj_in.register_forward_hook(hooks.after_proj_in, with_kwargs=True)
    setattr(model, ROUTED, hooks)
    return model
