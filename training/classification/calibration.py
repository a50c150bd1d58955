"""Fit the decision a calibrated classifier makes: temperature, open-set method, thresholds.

Pure functions over a model's outputs on held-out data (known classes), optional unknown data
(none of the classes) and reference embeddings (training images, for the kNN score). The open-set
scores come from `app.runtime.openset`, the code the service answers with.
"""

import math
from dataclasses import dataclass

import torch
from torchmetrics.functional.classification import binary_auroc, multiclass_calibration_error

from app.runtime.card import CalibrationSpec, OpenSetMethod, OpenSetSpec
from app.runtime.openset import OpenSetScorer, calibrated_probabilities
from training.classification.artifact import Outputs

ECE_BINS = 15
KNN_KS = (1, 10, 50)
# Without unknown data nothing can be measured; kNN on embeddings is the default because it
# separated every real unknown set best in our measurement (README "Decisions").
DEFAULT_METHOD: OpenSetMethod = "knn"
DEFAULT_K = 10
AUROC_MARGIN = 0.005


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionGoals:
    """What the caller asked the thresholds to achieve."""

    target_tpr: float = 0.95
    match_precision: float = 0.98
    method: OpenSetMethod | None = None  # None: choose by AUROC when unknown data is given
    k: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationData:
    """The data a calibration is fitted on, with the names the card records."""

    held_out: Outputs
    held_out_name: str
    references: torch.Tensor | None
    unknown: Outputs | None = None
    unknown_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One open-set method with its parameters, and how well it separated the unknown data."""

    label: str
    scorer: OpenSetScorer
    auroc: float | None


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The temperature minimising the negative log-likelihood of `targets` (Guo et al., 2017)."""
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")
    logits = logits.detach().float()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    return float(log_t.exp().item())


def expected_calibration_error(probabilities: torch.Tensor, targets: torch.Tensor) -> float:
    """ECE with 15 equal-width confidence bins (torchmetrics)."""
    ece = multiclass_calibration_error(
        probabilities, targets, num_classes=probabilities.shape[1], n_bins=ECE_BINS, norm="l1"
    )
    return float(ece)


def auroc(known_scores: torch.Tensor, unknown_scores: torch.Tensor) -> float:
    """How well the scores rank unknown above known images (1 = perfectly, 0.5 = chance)."""
    scores = torch.cat([known_scores, unknown_scores]).float()
    labels = torch.cat(
        [
            torch.zeros(len(known_scores), dtype=torch.long),
            torch.ones(len(unknown_scores), dtype=torch.long),
        ]
    )
    return float(binary_auroc(scores, labels, thresholds=None))


def threshold_for_tpr(known_scores: torch.Tensor, target_tpr: float) -> float:
    """The score at or below which `target_tpr` of the known images fall."""
    ordered = known_scores.float().sort().values
    position = min(len(ordered) - 1, max(0, math.ceil(target_tpr * len(ordered)) - 1))
    return float(ordered[position])


def accept_probability(
    probabilities: torch.Tensor, targets: torch.Tensor, accepted: torch.Tensor, precision: float
) -> tuple[float, float]:
    """(the lowest top probability whose matches are right at `precision`, share matched).

    Among `accepted` (not unknown) images, a match is an image whose top probability is at or
    above the threshold; the threshold is the lowest one at which at least `precision` of the
    matches are the right class. 1.0 when no threshold reaches it.
    """
    top, predicted = probabilities.max(dim=1)
    top, correct = top[accepted], (predicted == targets)[accepted]
    order = top.argsort(descending=True)
    top, correct = top[order], correct[order].float()
    precisions = correct.cumsum(0) / torch.arange(1, len(correct) + 1)
    reaching = (precisions >= precision).nonzero().flatten()
    if len(reaching) == 0:
        return 1.0, 0.0
    last = int(reaching[-1])
    # Images tied with the threshold probability are matches too (the rule is ">=").
    threshold = float(top[last])
    matched = int((top >= threshold).sum())
    return threshold, matched / max(1, len(probabilities))


def candidates(data: CalibrationData, temperature: float, goals: DecisionGoals) -> list[Candidate]:
    """Every open-set method that applies, scored on the unknown data when there is some."""
    scorers = [
        ("msp", OpenSetScorer(method="msp", temperature=temperature)),
        ("energy", OpenSetScorer(method="energy", temperature=temperature)),
    ]
    if data.references is not None and data.held_out.embeddings is not None:
        ks = (goals.k,) if goals.k is not None else KNN_KS
        scorers += [
            (
                f"knn@{k}",
                OpenSetScorer(
                    method="knn", temperature=temperature, references=data.references, k=k
                ),
            )
            for k in ks
        ]
    if goals.method is not None:
        scorers = [(label, scorer) for label, scorer in scorers if scorer.method == goals.method]
    return [
        Candidate(label=label, scorer=scorer, auroc=_separation(scorer, data))
        for label, scorer in scorers
    ]


def _separation(scorer: OpenSetScorer, data: CalibrationData) -> float | None:
    if data.unknown is None:
        return None
    return auroc(score(scorer, data.held_out), score(scorer, data.unknown))


def score(scorer: OpenSetScorer, outputs: Outputs) -> torch.Tensor:
    """The unknown score of every image in `outputs`."""
    return scorer(outputs.logits, outputs.embeddings)


def choose(found: list[Candidate]) -> Candidate:
    """The best-separating candidate, unless the default separates within AUROC_MARGIN of it.

    The default (kNN, k=10) is also the choice when nothing could be measured.
    """
    if not found:
        raise ValueError("no open-set method applies to this model")
    measured = [candidate for candidate in found if candidate.auroc is not None]
    if measured:
        best = max(measured, key=lambda candidate: candidate.auroc or 0.0)
        default = _preferred(measured)
        # A few hundred unknown images measure AUROC to about +-0.003: keep the default
        # unless another method is clearly better, so noise does not pick the method.
        if (best.auroc or 0.0) - (default.auroc or 0.0) <= AUROC_MARGIN:
            return default
        return best
    return _preferred(found)


def _preferred(found: list[Candidate]) -> Candidate:
    """The default method (closest k), else max-softmax before energy."""
    return min(
        found,
        key=lambda c: (
            c.scorer.method != DEFAULT_METHOD,
            abs(c.scorer.k - DEFAULT_K),
            c.scorer.method != "msp",
        ),
    )


def fit_calibration(
    data: CalibrationData, goals: DecisionGoals
) -> tuple[CalibrationSpec, list[Candidate]]:
    """Temperature, open-set method and threshold, accept probability, and what was measured."""
    held_out = data.held_out
    before = expected_calibration_error(held_out.logits.float().softmax(dim=1), held_out.targets)
    temperature = fit_temperature(held_out.logits, held_out.targets)
    probabilities = calibrated_probabilities(held_out.logits, temperature)
    found = candidates(data, temperature, goals)
    chosen = choose(found)
    known_scores = score(chosen.scorer, held_out)
    threshold = threshold_for_tpr(known_scores, goals.target_tpr)
    accepted = known_scores <= threshold
    accept, coverage = accept_probability(
        probabilities, held_out.targets, accepted, goals.match_precision
    )
    open_set = OpenSetSpec(
        method=chosen.scorer.method,
        threshold=threshold,
        k=chosen.scorer.k if chosen.scorer.method == "knn" else None,
        references=_reference_count(chosen.scorer),
        target_tpr=goals.target_tpr,
        known_data=data.held_out_name,
        unknown_data=data.unknown_name,
        tpr_known=float(accepted.float().mean()),
        fpr_unknown=_fpr(chosen.scorer, data.unknown, threshold),
        auroc=chosen.auroc,
        compared={c.label: round(c.auroc, 6) for c in found if c.auroc is not None},
        note=_note(data, chosen, found),
    )
    spec = CalibrationSpec(
        temperature=temperature,
        data=data.held_out_name,
        images=len(held_out.targets),
        ece_before=before,
        ece_after=expected_calibration_error(probabilities, held_out.targets),
        accept_probability=accept,
        accept_rule=(
            f"lowest top probability at which {goals.match_precision:.0%} of held-out matches "
            f"are right; {coverage:.1%} of held-out images are matches"
        ),
        open_set=open_set,
    )
    return spec, found


def _reference_count(scorer: OpenSetScorer) -> int | None:
    return len(scorer.references) if scorer.references is not None else None


def _fpr(scorer: OpenSetScorer, unknown: Outputs | None, threshold: float) -> float | None:
    if unknown is None:
        return None
    return float((score(scorer, unknown) <= threshold).float().mean())


def _note(data: CalibrationData, chosen: Candidate, found: list[Candidate]) -> str:
    if data.unknown is None:
        return (
            f"chosen on known held-out data only (no --unknown given): {chosen.label} is the "
            "default method; its rate on real unknown images has not been measured for this model"
        )
    best = max(found, key=lambda candidate: candidate.auroc or 0.0)
    if best is chosen:
        return f"{chosen.label} separated {data.unknown_name} best (AUROC {chosen.auroc:.4f})"
    return (
        f"{chosen.label} (the default) kept: on {data.unknown_name} its AUROC {chosen.auroc:.4f} "
        f"is within {AUROC_MARGIN} of the best, {best.label} {best.auroc:.4f}"
    )
