"""`evaluate`'s decision figures: calibration, open-set separation, decisions, rejection curve.

Measured on the evaluated split (known images) and on any unknown sets given, with the card's
own temperature, method and thresholds, so the figures are what callers of /classify get.
A model without calibration is scored as callers rank it today: by its top softmax probability.
"""

from collections import Counter
from pathlib import Path
from typing import Any

import torch

from app.runtime.card import ModelCard
from app.runtime.loader import LoadedModel
from app.runtime.openset import OpenSetScorer, calibrated_probabilities, decide, scorer_for
from training.classification.artifact import ArtifactEvaluation, Outputs, model_outputs
from training.classification.calibration import (
    CalibrationData,
    DecisionGoals,
    auroc,
    candidates,
    expected_calibration_error,
)
from training.classification.decision_plots import (
    REJECTION_PNG,
    RELIABILITY_PNG,
    plot_rejection,
    plot_reliability,
)
from training.classification.unknowns import load_unknown


def unknown_outputs(loaded: LoadedModel, source: str, batch_size: int, workers: int) -> Outputs:
    """The model's outputs on an unknown set."""
    images = load_unknown(source, workers)
    return model_outputs(
        loaded, images, images.targets, batch_size=batch_size, workers=workers, description=source
    )


def evaluate_decisions(
    result: ArtifactEvaluation, unknowns: dict[str, Outputs], report_dir: Path
) -> dict[str, Any]:
    """Every decision figure as JSON-ready values; plots written into `report_dir`."""
    loaded, known = result.model, result.outputs
    card = loaded.card
    temperature = card.calibration.temperature if card.calibration else 1.0
    raw = known.logits.softmax(dim=1)
    calibrated = calibrated_probabilities(known.logits, temperature)
    scorer = _card_scorer(loaded)
    known_scores = scorer(known.logits, known.embeddings)
    figures: dict[str, Any] = {
        "calibrated": card.calibration is not None,
        "split": result.split,
        "images": len(known.targets),
        "ece_softmax": expected_calibration_error(raw, known.targets),
        "ece_calibrated": expected_calibration_error(calibrated, known.targets),
        "temperature": temperature,
        "open_set_method": _scorer_label(scorer),
        "known": _decision_counts(card, calibrated, known_scores, known.targets),
        "unknown": {
            name: _unknown_figures(loaded, scorer, known, known_scores, outputs)
            for name, outputs in unknowns.items()
        },
    }
    title = f"{card.name} on {result.source} {result.split}"
    plot_reliability(
        {"softmax": raw, f"calibrated (T = {temperature:.3f})": calibrated},
        known.targets,
        report_dir / RELIABILITY_PNG,
        title,
    )
    correct = calibrated.argmax(dim=1) == known.targets
    plot_rejection(
        {
            "by confidence (1 - top probability)": 1 - calibrated.amax(dim=1),
            **(
                {f"by unknown_score ({_scorer_label(scorer)})": known_scores}
                if card.calibration
                else {}
            ),
        },
        correct,
        report_dir / REJECTION_PNG,
        title,
    )
    figures["plots"] = [str(report_dir / RELIABILITY_PNG), str(report_dir / REJECTION_PNG)]
    return figures


def format_decisions(figures: dict[str, Any]) -> str:
    """The figures as a few readable lines."""
    lines = [
        f"calibration on {figures['split']} ({figures['images']} images): ECE softmax "
        f"{figures['ece_softmax']:.4f}, calibrated {figures['ece_calibrated']:.4f} "
        f"(T = {figures['temperature']:.4f})",
        f"open-set score: {figures['open_set_method']}",
    ]
    known = figures["known"]
    if "tpr" in known:
        lines.append(
            f"known: TPR {known['tpr']:.2%} at the card's threshold; decisions {known['decisions']}"
            f"; accuracy of matches {known['match_accuracy']:.2%}"
        )
    for name, unknown in figures["unknown"].items():
        methods = ", ".join(f"{m} {v:.4f}" for m, v in unknown["auroc_by_method"].items())
        line = f"{name} ({unknown['images']} images): AUROC {unknown['auroc']:.4f} [{methods}]"
        if "fpr" in unknown:
            line += f"; FPR {unknown['fpr']:.2%}; decisions {unknown['decisions']}"
        lines.append(line)
    lines += [f"wrote {path}" for path in figures["plots"]]
    return "\n".join(lines)


def _card_scorer(loaded: LoadedModel) -> OpenSetScorer:
    """The card's scorer; a model without calibration is ranked by its top softmax probability."""
    calibration = loaded.card.calibration
    if calibration is None:
        return OpenSetScorer(method="msp", temperature=1.0)
    return scorer_for(calibration, loaded.references)


def _scorer_label(scorer: OpenSetScorer) -> str:
    return f"knn@{scorer.k}" if scorer.method == "knn" else scorer.method


def _decision_counts(
    card: ModelCard, probabilities: torch.Tensor, scores: torch.Tensor, targets: torch.Tensor
) -> dict[str, Any]:
    calibration = card.calibration
    if calibration is None:
        return {}
    top, predicted = probabilities.max(dim=1)
    decisions = [
        decide(
            p,
            s,
            accept_probability=calibration.accept_probability,
            threshold=calibration.open_set.threshold,
        )
        for p, s in zip(top.tolist(), scores.tolist(), strict=True)
    ]
    counts = Counter(decisions)
    figures: dict[str, Any] = {
        "decisions": {name: counts.get(name, 0) for name in ("match", "uncertain", "unknown")},
        "tpr": float((scores <= calibration.open_set.threshold).float().mean()),
    }
    if (targets >= 0).all():
        matched = torch.tensor([decision == "match" for decision in decisions])
        hits = (predicted == targets)[matched]
        figures["match_accuracy"] = float(hits.float().mean()) if len(hits) else 0.0
    return figures


def _unknown_figures(
    loaded: LoadedModel,
    scorer: OpenSetScorer,
    known: Outputs,
    known_scores: torch.Tensor,
    unknown: Outputs,
) -> dict[str, Any]:
    scores = scorer(unknown.logits, unknown.embeddings)
    card = loaded.card
    temperature = card.calibration.temperature if card.calibration else 1.0
    figures: dict[str, Any] = {
        "images": len(unknown.targets),
        "auroc": auroc(known_scores, scores),
        "auroc_by_method": _auroc_by_method(loaded, known, unknown, temperature),
    }
    if card.calibration is not None:
        probabilities = calibrated_probabilities(unknown.logits, temperature)
        counts = _decision_counts(card, probabilities, scores, unknown.targets)
        figures["fpr"] = counts["tpr"]  # the share of unknown images not called unknown
        figures["decisions"] = counts["decisions"]
    return figures


def _auroc_by_method(
    loaded: LoadedModel, known: Outputs, unknown: Outputs, temperature: float
) -> dict[str, float]:
    """AUROC of every method calibrate compares, on this unknown set (the README's table)."""
    data = CalibrationData(
        held_out=known, held_out_name="", references=loaded.references, unknown=unknown
    )
    return {
        c.label: c.auroc
        for c in candidates(data, temperature, DecisionGoals())
        if c.auroc is not None
    }
