"""The video pack's values in the disk cache: schedulers (with their state) and the small frozen values.

Registered with the engine's codecs (`vdgraph.persist`) under fixed tags; model handles are not registered and
so are never stored (they are rebuilt, and only when a node that needs them has to run).
"""

from __future__ import annotations

from diffusers.schedulers.scheduling_utils import SchedulerMixin

from vdgraph.persist import register_codec, register_dataclass

from vdgraph_video.ops.schedulers import restore_scheduler, scheduler_state
from vdgraph_video.values import Conditioning, SchedulerConfig, TranslationFlow
from vdgraph_video.values_svd import ImageCondition

register_codec("video.scheduler", SchedulerMixin, scheduler_state, restore_scheduler)
register_dataclass("video.scheduler_config", SchedulerConfig)
register_dataclass("video.conditioning", Conditioning)
register_dataclass("video.translation_flow", TranslationFlow)
register_dataclass("video.image_condition", ImageCondition)
