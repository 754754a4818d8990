"""The real stages behind the gate workers: the generator, the moderation models, C2PA signing.

Each adapter turns a job from `provenance.gates` into a call of its library and the library's result
into the event payload. Heavy libraries are imported when a stage is built, not when this module is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from provenance.blobstore import BlobStore
from provenance.errors import InvalidInput
from provenance.gates import RenderJob


def decode_image(data: bytes) -> np.ndarray:
    """An encoded image (PNG, JPEG) as an RGB array; a clear error for anything else."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidInput("the reference is not an image OpenCV can read (PNG or JPEG)")
    return np.ascontiguousarray(image[:, :, ::-1])


def encode_png(image: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise InvalidInput("could not encode the image as PNG")
    return bytes(data)


class GeneratorStage:
    """Renders with the generator's backends into the blob store."""

    def __init__(self, store: BlobStore, weights_dir: Path | None = None) -> None:
        self.store = store
        self.weights_dir = weights_dir
        self._backends: dict[str, Any] = {}

    def render(self, job: RenderJob) -> dict[str, Any]:
        from generator import RenderSpec, make_backend, render_to_blob

        params = job.parameters
        name = str(params.get("backend", "reference"))
        if name not in self._backends:
            self._backends[name] = make_backend(name, weights_dir=self.weights_dir)
        spec = RenderSpec(
            prompt=job.prompt,
            seed=job.seed,
            duration_s=float(params["duration_s"]),
            fps=int(params["fps"]),
            width=int(params["width"]),
            height=int(params["height"]),
            cameos={cameo_id: decode_image(data) for cameo_id, data in job.cameo_images.items()},
            backend=name,
        )
        outcome = render_to_blob(spec, self.store, self._backends[name])
        payload: dict[str, Any] = outcome.to_payload()
        return payload
