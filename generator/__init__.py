"""The render step: a `RenderSpec` in, an H.264 + AAC file in the blob store and its `VideoRendered` record out.

Importing this package is cheap: torch, OpenCV and PyAV are imported only when a render runs.
"""

from generator.backends import RenderedVideo, VideoBackend, make_backend
from generator.encode import EncoderConfig
from generator.errors import RenderError
from generator.pipeline import RenderOutcome, render_to_blob
from generator.script import CameoAppearance, SceneScript, SoundEvent
from generator.spec import RenderSpec

__all__ = [
    "CameoAppearance",
    "EncoderConfig",
    "RenderError",
    "RenderOutcome",
    "RenderSpec",
    "RenderedVideo",
    "SceneScript",
    "SoundEvent",
    "VideoBackend",
    "make_backend",
    "render_to_blob",
]
