"""The built-in "video" pack: typed nodes for text-to-video diffusion (Text2Video-Zero, 3-D UNets, ControlVideo
parts), built on diffusers. Tensor math lives in `vdgraph_video.ops`; nodes are thin wrappers."""

from __future__ import annotations

from vdgraph_video.animatediff import ContextWindowsNode, DenoiseFreeInit, FreeNoiseLatents
from vdgraph_video.attention import CrossFrameAttentionNode
from vdgraph_video.background import ForegroundMasks, SmoothBackground
from vdgraph_video.conditions import CannyCondition, Condition, DepthCondition, PoseCondition, VideoCondition
from vdgraph_video.controlnet import ApplyControlNet, LoadControlNet
from vdgraph_video.controlvideo import HierarchicalSamplerNode, InterleavedSmootherNode
from vdgraph_video.denoise import Denoise
from vdgraph_video.frame_nodes import NODES as FRAME_NODES
from vdgraph_video.frames import ConcatLatents, SelectLatentFrames
from vdgraph_video.lora import ApplyLora
from vdgraph_video.images import ReadImage
from vdgraph_video.models import LoadModel
from vdgraph_video.motion_adapter import ApplyMotionAdapter, LoadMotionAdapter
from vdgraph_video.motion import TranslationFlowNode, WarpLatents
from vdgraph_video.noise import Renoise, SampleNoise
from vdgraph_video.prompt_travel import PromptTravel
import vdgraph_video.persist  # noqa: F401  (registers the cache codecs of the pack's values)
from vdgraph_video.schedulers import MakeScheduler, Text2VideoZeroSteps
from vdgraph_video.smooth import InterleaveFrames, ReplaceX0, SmoothFrames, SmoothLatents
from vdgraph_video.strength import NoiseToStep, StrengthSteps
from vdgraph_video.svd import SVDDenoise, SVDEncodeImage, SVDNoise
from vdgraph_video.text import EncodeText
from vdgraph_video.vae import DecodeLatents, EncodeFrames
from vdgraph_video.video_io import ContactSheet, ReadVideo, WriteImages, WriteVideo

NODES = [
    LoadModel, EncodeText, MakeScheduler, Text2VideoZeroSteps, SampleNoise, Renoise, Denoise,
    TranslationFlowNode, WarpLatents, CrossFrameAttentionNode, ConcatLatents, SelectLatentFrames,
    DecodeLatents, EncodeFrames, SmoothFrames, SmoothLatents, InterleaveFrames, ReplaceX0,
    WriteVideo, WriteImages, ContactSheet, ReadVideo, LoadControlNet, ApplyControlNet,
    CannyCondition, PoseCondition, DepthCondition, VideoCondition, Condition,
    StrengthSteps, NoiseToStep, ForegroundMasks, SmoothBackground, *FRAME_NODES,
    ApplyLora,
    InterleavedSmootherNode, HierarchicalSamplerNode,
    ReadImage, SVDEncodeImage, SVDNoise, SVDDenoise,
    LoadMotionAdapter, ApplyMotionAdapter, ContextWindowsNode, FreeNoiseLatents, DenoiseFreeInit, PromptTravel,
]
