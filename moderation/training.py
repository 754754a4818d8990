"""Training linear heads and evaluating classifiers on labelled folders.

A labelled folder has one subfolder per label (`violence/`, `benign/`, or `real/`, `generated/`) holding
images and videos. Training embeds every image and every sampled video frame with the backbone and fits a
class-balanced, L2-regularised logistic regression (Newton's method in numpy: a few exact steps, no
learning rate to tune, the same result on every run). Evaluation scores each file (a video by its highest
frame score, as the gate does) and reports precision, recall and the confusion matrix at the threshold,
plus the lowest threshold that reaches a target precision.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from kernel.errors import InvalidInput
from moderation.sampling import IMAGE_SUFFIXES, VIDEO_SUFFIXES

if TYPE_CHECKING:
    from moderation.backbone import Backbone
    from moderation.sampling import SamplingConfig

MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


@dataclass(frozen=True)
class LabelledFile:
    path: Path
    label: str


def scan_labelled_folder(folder: Path) -> list[LabelledFile]:
    """Media files under each label subfolder (recursively), sorted for repeatable runs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"not a folder: {folder}")
    files: list[LabelledFile] = []
    for label_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(label_dir.rglob("*")):
            if path.is_file() and path.suffix.lower() in MEDIA_SUFFIXES:
                files.append(LabelledFile(path, label_dir.name))
    if not files:
        raise InvalidInput(f"{folder} has no images or videos in label subfolders")
    return files


def _embed_files(
    files: list[LabelledFile],
    backbone: Backbone,
    sampling: SamplingConfig | None,
    show_progress: bool,
) -> Iterator[tuple[LabelledFile, np.ndarray]]:
    """(file, frame embeddings) for each file; a file that cannot be read stops the run with its name."""
    from tqdm import tqdm

    from moderation.sampling import SamplingConfig, iter_media_batches

    sampling = sampling or SamplingConfig()
    for item in tqdm(files, desc="embedding", unit="file", disable=not show_progress, file=sys.stderr):
        rows = [backbone.encode_images([s.image for s in batch]) for batch in iter_media_batches(item.path, sampling)]
        yield item, np.concatenate(rows, axis=0)


def fit_logistic(
    features: np.ndarray, targets: np.ndarray, *, l2: float = 1e-3, max_steps: int = 50
) -> tuple[np.ndarray, float]:
    """Class-balanced L2 logistic regression by Newton's method; returns (weight, bias) on raw features.

    Embeddings from one backbone share a large common component, so the fit runs on standardised
    features (where one L2 strength suits every backbone) and the scaling is folded back into the
    weight and bias: the stored head stays a plain linear function of the embedding.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    positives = float(y.sum())
    negatives = float(len(y) - positives)
    if positives == 0 or negatives == 0:
        raise InvalidInput("training needs examples of both the positive label and the others")
    mean = x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), 1e-6)
    standardised = (x - mean) / scale
    sample_weight = np.where(y > 0.5, len(y) / (2 * positives), len(y) / (2 * negatives))
    design = np.hstack([standardised, np.ones((len(x), 1))])
    theta = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2 * len(y))
    penalty[-1] = 0.0
    for _ in range(max_steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ theta, -60, 60)))
        gradient = design.T @ (sample_weight * (p - y)) + penalty * theta
        curvature = sample_weight * p * (1 - p)
        hessian = (design * curvature[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(len(theta))
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    weight = theta[:-1] / scale
    bias = theta[-1] - float(weight @ mean)
    return weight.astype(np.float32), float(bias)


@dataclass(frozen=True)
class TrainingReport:
    head_path: Path
    metadata_path: Path
    positive_label: str
    labels: tuple[str, ...]
    samples: int
    positives: int
    train_accuracy: float

    def render(self) -> str:
        others = ", ".join(label for label in self.labels if label != self.positive_label)
        return (
            f"trained head {self.head_path} for {self.positive_label!r} against {others}: {self.samples} samples "
            f"({self.positives} positive), training accuracy {self.train_accuracy:.3f}"
        )


def train_head(
    folder: Path,
    out: Path,
    backbone: Backbone,
    *,
    positive_label: str,
    sampling: SamplingConfig | None = None,
    l2: float = 1e-3,
    show_progress: bool = False,
) -> TrainingReport:
    """Fits `positive_label` against every other label of the folder and writes the head beside `out`."""
    from moderation.heads import LinearHead, save_head

    files = scan_labelled_folder(folder)
    labels = tuple(sorted({f.label for f in files}))
    if positive_label not in labels:
        raise InvalidInput(f"no subfolder named {positive_label!r} in {folder} (labels: {', '.join(labels)})")
    if len(labels) < 2:
        raise InvalidInput(f"{folder} needs at least two label subfolders")
    features: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for item, embeddings in _embed_files(files, backbone, sampling, show_progress):
        features.append(embeddings)
        targets.append(np.full(len(embeddings), 1.0 if item.label == positive_label else 0.0))
    x, y = np.concatenate(features), np.concatenate(targets)
    weight, bias = fit_logistic(x, y, l2=l2)
    head = LinearHead(
        weight=weight,
        bias=bias,
        positive_label=positive_label,
        backbone_model_hash=backbone.model_hash,
        backbone_model_name=backbone.model_name,
    )
    accuracy = float(((head.probability(x) >= 0.5) == (y > 0.5)).mean())
    metadata = {
        "labels": list(labels),
        "samples": len(y),
        "positives": int(y.sum()),
        "l2": l2,
        "train_accuracy": accuracy,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "development_model": backbone.development_model,
    }
    head_path, meta_path = save_head(head, out, metadata)
    return TrainingReport(head_path, meta_path, positive_label, labels, len(y), int(y.sum()), accuracy)


@dataclass(frozen=True)
class EvaluationReport:
    classifier: str
    positive_label: str
    threshold: float
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    target_precision: float
    threshold_for_target: float | None
    recall_at_target: float | None

    @property
    def precision(self) -> float:
        fired = self.true_positives + self.false_positives
        return self.true_positives / fired if fired else 1.0

    @property
    def recall(self) -> float:
        actual = self.true_positives + self.false_negatives
        return self.true_positives / actual if actual else 0.0

    def render(self) -> str:
        tp, fp, tn, fn = self.true_positives, self.false_positives, self.true_negatives, self.false_negatives
        width = max(6, len(str(max(tp, fp, tn, fn))))
        lines = [
            f"classifier {self.classifier}: {tp + fn} {self.positive_label!r} and {fp + tn} other files",
            f"threshold {self.threshold:.4f}: precision {self.precision:.3f}, recall {self.recall:.3f}",
            "confusion matrix (rows: actual, columns: predicted)",
            f"{'':>12} {'positive':>{width + 2}} {'negative':>{width + 2}}",
            f"{'positive':>12} {tp:>{width + 2}} {fn:>{width + 2}}",
            f"{'negative':>12} {fp:>{width + 2}} {tn:>{width + 2}}",
        ]
        if self.threshold_for_target is None:
            lines.append(f"no threshold reaches precision {self.target_precision:.3f} on this folder")
        else:
            lines.append(
                f"threshold for precision >= {self.target_precision:.3f}: {self.threshold_for_target:.4f} "
                f"(recall {self.recall_at_target:.3f})"
            )
        return "\n".join(lines)


def threshold_for_precision(scores: np.ndarray, actual: np.ndarray, target: float) -> tuple[float, float] | None:
    """The lowest threshold (so the highest recall) whose precision on these scores reaches `target`."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_actual = scores[order], actual[order]
    true_positives = np.cumsum(sorted_actual)
    fired = np.arange(1, len(scores) + 1)
    total_positive = int(actual.sum())
    best: tuple[float, float] | None = None
    for i in range(len(scores)):
        if i + 1 < len(scores) and sorted_scores[i + 1] == sorted_scores[i]:
            continue  # a threshold fires on every equal score at once
        precision = true_positives[i] / fired[i]
        if precision >= target and total_positive:
            best = (float(sorted_scores[i]), float(true_positives[i] / total_positive))
    return best


def evaluate(
    folder: Path,
    backbone: Backbone,
    *,
    head: Path | None = None,
    policy: Path | None = None,
    category: str | None = None,
    threshold: float | None = None,
    target_precision: float = 0.95,
    sampling: SamplingConfig | None = None,
    stream: TextIO | None = None,
    show_progress: bool = False,
) -> EvaluationReport:
    """Scores a labelled folder with a trained head, or with one category of a policy's prompts.

    The positive label is the head's positive label, or the category id; every other subfolder counts
    as negative. The threshold defaults to the one the policy sets (0.5 for a head without a policy).
    """
    score: Callable[[np.ndarray], np.ndarray]
    if head is not None:
        from moderation.heads import load_head

        linear = load_head(head)
        linear.check_backbone(backbone)
        positive = linear.positive_label
        score = linear.probability
        chosen = 0.5 if threshold is None else threshold
        name = f"head {Path(head).name}"
    elif category is not None:
        from moderation.policy import load_policy

        loaded = load_policy(policy)
        rule = loaded.category(category)
        if not rule.prompts:
            raise InvalidInput(f"category {category!r} has no prompts to evaluate; evaluate its head instead")
        concepts = backbone.encode_texts(rule.prompts)

        def score(embeddings: np.ndarray) -> np.ndarray:
            return np.asarray((embeddings @ concepts.T).max(axis=1))

        positive = category
        chosen = rule.threshold if threshold is None else threshold
        name = f"{loaded.name}@{loaded.version}/{category} prompts"
    else:
        raise InvalidInput("evaluate needs a head file or a policy category")
    files = scan_labelled_folder(folder)
    scores: list[float] = []
    actual: list[bool] = []
    for item, embeddings in _embed_files(files, backbone, sampling, show_progress):
        scores.append(float(np.max(score(embeddings))))
        actual.append(item.label == positive)
    score_array, actual_array = np.asarray(scores), np.asarray(actual)
    predicted = score_array >= chosen
    found = threshold_for_precision(score_array, actual_array.astype(np.float64), target_precision)
    report = EvaluationReport(
        classifier=name,
        positive_label=positive,
        threshold=chosen,
        true_positives=int((predicted & actual_array).sum()),
        false_positives=int((predicted & ~actual_array).sum()),
        true_negatives=int((~predicted & ~actual_array).sum()),
        false_negatives=int((~predicted & actual_array).sum()),
        target_precision=target_precision,
        threshold_for_target=found[0] if found else None,
        recall_at_target=found[1] if found else None,
    )
    if stream is not None:
        print(report.render(), file=stream)
    return report
