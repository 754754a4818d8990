"""Dynamic int8 quantisation of the image encoder, switched on only when it is shown to be harmless.

Quantising the weights to int8 roughly doubles CPU throughput again, but it moves every embedding a little.
Before the int8 graph replaces the fp32 one, both encode a calibration set and the gate measures the
cosine similarity of their embeddings and how often the policy's outcomes (allow / review / block per
category) agree. Only if the worst cosine and the agreement both clear their configured floors is int8
used; otherwise fp32 stays and the report says why. The report is stored beside the cached models and
reused while the calibration set, the decision rule and the floors are unchanged.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from moderation.errors import ModelLoadError
from moderation.onnx_encoder import FP32_FILE, INT8_FILE, OnnxImageEncoder, cosine_rows

if TYPE_CHECKING:
    from moderation.backbone import Backbone

REPORT_FILE = "int8_report.json"


@dataclass(frozen=True)
class Int8Report:
    enabled: bool
    reason: str
    samples: int
    mean_cosine: float | None
    min_cosine: float | None
    decision_agreement: float | None
    decisions_compared: int
    decisions_not_allow: int
    min_cosine_floor: float
    decision_agreement_floor: float
    calibration_id: str
    decision_id: str

    def key(self) -> tuple[str, str, float, float]:
        """What the measurement depends on besides the models themselves (which the cache key fixes)."""
        return (self.calibration_id, self.decision_id, self.min_cosine_floor, self.decision_agreement_floor)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Int8Report:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def quantize_encoder(fp32_path: Path, int8_path: Path) -> None:
    """Writes the int8 graph beside the fp32 one (temporary name, then rename)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    handle, temp_name = tempfile.mkstemp(prefix=".int8-", suffix=".onnx", dir=int8_path.parent)
    os.close(handle)
    try:
        quantize_dynamic(fp32_path, temp_name, weight_type=QuantType.QInt8)
        os.replace(temp_name, int8_path)
    except Exception as exc:
        Path(temp_name).unlink(missing_ok=True)
        raise ModelLoadError(f"int8 quantisation of the image encoder failed: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class Agreement:
    mean_cosine: float
    min_cosine: float
    decision_agreement: float
    decisions_compared: int
    decisions_not_allow: int


def measure(
    backbone: Backbone,
    fp32: OnnxImageEncoder,
    int8: OnnxImageEncoder,
    pixels: np.ndarray,
    decide: Callable[[np.ndarray], np.ndarray],
) -> Agreement:
    """How close int8 embeddings are to fp32 ones, and how often the decisions made from them agree.

    `decisions_not_allow` counts fp32 decisions other than allow (code 0): when it is zero the
    agreement only shows that int8 did not push benign images over a threshold.
    """
    reference = backbone.encode_pixels(pixels, encoder=fp32)
    candidate = backbone.encode_pixels(pixels, encoder=int8)
    cosines = cosine_rows(reference, candidate)
    expected = np.asarray(decide(reference))
    got = np.asarray(decide(candidate))
    return Agreement(
        mean_cosine=float(cosines.mean()),
        min_cosine=float(cosines.min()),
        decision_agreement=float((expected == got).mean()) if expected.size else 1.0,
        decisions_compared=int(expected.size),
        decisions_not_allow=int((expected != 0).sum()),
    )


def gate_int8(
    backbone: Backbone,
    calibration_images: Sequence[np.ndarray],
    decide: Callable[[np.ndarray], np.ndarray],
    *,
    calibration_id: str,
    decision_id: str,
) -> tuple[Int8Report, OnnxImageEncoder | None]:
    """Measures int8 against fp32 and returns the report and, if it passed, the int8 encoder."""
    config = backbone.config

    def report(
        enabled: bool,
        reason: str,
        samples: int = 0,
        measured: Agreement | None = None,
    ) -> Int8Report:
        return Int8Report(
            enabled=enabled,
            reason=reason,
            samples=samples,
            mean_cosine=measured.mean_cosine if measured else None,
            min_cosine=measured.min_cosine if measured else None,
            decision_agreement=measured.decision_agreement if measured else None,
            decisions_compared=measured.decisions_compared if measured else 0,
            decisions_not_allow=measured.decisions_not_allow if measured else 0,
            min_cosine_floor=config.int8_min_cosine,
            decision_agreement_floor=config.int8_min_decision_agreement,
            calibration_id=calibration_id,
            decision_id=decision_id,
        )

    def refused(reason: str) -> tuple[Int8Report, None]:
        return report(False, reason), None

    fp32 = backbone.image_encoder
    if backbone.onnx_dir is None or not isinstance(fp32, OnnxImageEncoder):
        return refused("int8 needs the onnxruntime runtime; running fp32")
    if fp32.provider != "CPUExecutionProvider":
        return refused(f"dynamic int8 runs on CPU only; keeping fp32 on {fp32.provider}")
    if not calibration_images:
        return refused("no calibration images to measure int8 against fp32; running fp32")

    folder = backbone.onnx_dir
    report_path = folder / REPORT_FILE
    previous = _read_report(report_path)
    int8 = load_int8_encoder(folder, config.num_threads)
    wanted = (calibration_id, decision_id, config.int8_min_cosine, config.int8_min_decision_agreement)
    if previous is not None and previous.samples and previous.key() == wanted:
        return previous, int8 if previous.enabled else None

    pixels = backbone.preprocess(list(calibration_images))
    measured = measure(backbone, fp32, int8, pixels, decide)
    min_cos, agreement = measured.min_cosine, measured.decision_agreement
    passed = min_cos >= config.int8_min_cosine and agreement >= config.int8_min_decision_agreement
    if passed:
        reason = (
            f"int8 enabled: worst cosine {min_cos:.5f} >= {config.int8_min_cosine}, "
            f"decision agreement {agreement:.4f} >= {config.int8_min_decision_agreement}"
        )
    else:
        failures = []
        if min_cos < config.int8_min_cosine:
            failures.append(f"worst cosine {min_cos:.5f} < floor {config.int8_min_cosine}")
        if agreement < config.int8_min_decision_agreement:
            failures.append(f"decision agreement {agreement:.4f} < floor {config.int8_min_decision_agreement}")
        reason = "int8 refused, running fp32: " + "; ".join(failures)
    result = report(passed, reason, len(pixels), measured)
    _write_report(report_path, result)
    return result, int8 if passed else None


def load_int8_encoder(folder: Path, num_threads: int | None) -> OnnxImageEncoder:
    """The cached int8 graph, quantised now if absent or unreadable."""
    int8_path = folder / INT8_FILE
    for attempt in range(2):
        if not int8_path.is_file():
            quantize_encoder(folder / FP32_FILE, int8_path)
        try:
            return OnnxImageEncoder(
                int8_path, providers=["CPUExecutionProvider"], num_threads=num_threads, precision="int8"
            )
        except Exception as exc:
            int8_path.unlink(missing_ok=True)
            if attempt:
                raise ModelLoadError(f"the int8 image encoder cannot be loaded: {type(exc).__name__}") from exc
    raise AssertionError("unreachable")


def _read_report(path: Path) -> Int8Report | None:
    try:
        return Int8Report.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_report(path: Path, report: Int8Report) -> None:
    handle, temp_name = tempfile.mkstemp(prefix=".int8-report-", suffix=".json", dir=path.parent)
    os.close(handle)
    try:
        Path(temp_name).write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True))
        os.replace(temp_name, path)
    except OSError:
        Path(temp_name).unlink(missing_ok=True)
