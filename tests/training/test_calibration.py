"""The decision fit's pieces on known answers: temperature, ECE, thresholds, method choice."""

import pytest
import torch

from app.runtime.openset import OpenSetScorer, decide, energy_score, knn_score, msp_score
from training.classification.artifact import Outputs
from training.classification.calibration import (
    AUROC_MARGIN,
    CalibrationData,
    Candidate,
    DecisionGoals,
    accept_probability,
    auroc,
    choose,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    threshold_for_tpr,
)


def sampled_labels(logits: torch.Tensor, temperature: float, seed: int = 0) -> torch.Tensor:
    """Labels drawn from softmax(logits / temperature): that temperature is the calibrated one."""
    generator = torch.Generator().manual_seed(seed)
    probabilities = (logits / temperature).softmax(dim=1)
    return torch.multinomial(probabilities, 1, generator=generator).flatten()


def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with() -> None:
    logits = torch.randn(20_000, 5, generator=torch.Generator().manual_seed(1)) * 4
    for true_temperature in (0.5, 1.0, 2.5):
        targets = sampled_labels(logits, true_temperature)
        assert fit_temperature(logits, targets) == pytest.approx(true_temperature, rel=0.06)


def test_calibration_lowers_the_ece_of_an_overconfident_model() -> None:
    logits = torch.randn(20_000, 5, generator=torch.Generator().manual_seed(2)) * 4
    targets = sampled_labels(logits, 3.0)
    before = expected_calibration_error(logits.softmax(dim=1), targets)
    after = expected_calibration_error(
        (logits / fit_temperature(logits, targets)).softmax(1), targets
    )
    assert before > 0.1
    assert after < 0.02


def test_threshold_keeps_the_target_share_of_known_images() -> None:
    scores = torch.arange(1000, dtype=torch.float32)
    threshold = threshold_for_tpr(scores, 0.95)
    assert float((scores <= threshold).float().mean()) == pytest.approx(0.95)
    assert threshold_for_tpr(scores, 1.0) == 999.0


def test_accept_probability_reaches_the_asked_precision() -> None:
    # Ten images, confidences 0.99 .. 0.90; the two least confident are wrong.
    top = torch.linspace(0.99, 0.90, 10)
    probabilities = torch.stack([top, 1 - top], dim=1)
    targets = torch.tensor([0] * 8 + [1] * 2)
    everyone = torch.ones(10, dtype=torch.bool)
    threshold, matched = accept_probability(probabilities, targets, everyone, precision=1.0)
    assert threshold == pytest.approx(0.92)
    assert matched == pytest.approx(0.8)
    # 8 of the 9 most confident are right (0.89): enough for 0.85, not for 0.9.
    assert accept_probability(probabilities, targets, everyone, precision=0.9)[0] == pytest.approx(
        0.92
    )
    assert accept_probability(probabilities, targets, everyone, precision=0.85)[0] == pytest.approx(
        0.91
    )


def test_scores_rank_what_each_method_is_meant_to() -> None:
    confident, flat = torch.tensor([[9.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 1.0]])
    assert msp_score(confident, 1.0) < msp_score(flat, 1.0)
    assert energy_score(confident, 1.0) < energy_score(flat * 0.1, 1.0)
    references = torch.eye(3)
    near = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1, 0.0]]), dim=1)
    far = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0, 1.0]]), dim=1)
    assert knn_score(near, references, 1) < knn_score(far, references, 1)
    assert float(knn_score(references[:1], references, 1)) == pytest.approx(0.0)
    assert auroc(torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4])) == 1.0


def test_decide_orders_unknown_before_match() -> None:
    assert decide(0.99, 0.5, accept_probability=0.9, threshold=0.2) == "unknown"
    assert decide(0.95, 0.1, accept_probability=0.9, threshold=0.2) == "match"
    assert decide(0.60, 0.1, accept_probability=0.9, threshold=0.2) == "uncertain"


def clusters(count: int, seed: int, centres: torch.Tensor) -> Outputs:
    """Embeddings near `centres` (one cluster per class) with logits that agree."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.arange(count) % len(centres)
    points = centres[targets] + 0.3 * torch.randn(count, centres.shape[1], generator=generator)
    embeddings = torch.nn.functional.normalize(points, dim=1)
    return Outputs(logits=5 * embeddings @ centres.T, embeddings=embeddings, targets=targets)


def test_with_unknown_data_the_best_separating_method_is_chosen() -> None:
    centres = torch.eye(4)[:3]  # three known classes; unknowns sit on the fourth axis
    held_out = clusters(600, 1, centres)
    references = clusters(300, 2, centres).embeddings
    strangers = clusters(200, 3, torch.eye(4)[3:])
    # Strangers the logits are sure about (like a cat called "birds" at 0.83): only the
    # embedding shows they are far from every class.
    unknown = Outputs(
        logits=held_out.logits[:200],
        embeddings=strangers.embeddings,
        targets=torch.full((200,), -1),
    )
    data = CalibrationData(
        held_out=held_out,
        held_out_name="held-out",
        references=references,
        unknown=unknown,
        unknown_name="strangers",
    )
    spec, found = fit_calibration(data, DecisionGoals(target_tpr=0.9))
    assert {c.label for c in found} == {"msp", "energy", "knn@1", "knn@10", "knn@50"}
    assert spec.open_set.method == "knn"
    assert spec.open_set.auroc is not None
    assert spec.open_set.auroc >= max(c.auroc or 0 for c in found) - AUROC_MARGIN
    assert spec.open_set.auroc > 0.99
    assert spec.open_set.compared["msp"] < 0.7
    assert spec.open_set.tpr_known == pytest.approx(0.9, abs=0.002)
    assert spec.open_set.fpr_unknown is not None and spec.open_set.fpr_unknown < 0.05
    assert spec.open_set.unknown_data == "strangers"
    assert set(spec.open_set.compared) == {c.label for c in found}


def test_without_unknown_data_the_default_method_is_used_and_said() -> None:
    centres = torch.eye(3)
    data = CalibrationData(
        held_out=clusters(300, 1, centres),
        held_out_name="held-out",
        references=clusters(90, 2, centres).embeddings,
    )
    spec, found = fit_calibration(data, DecisionGoals())
    assert (spec.open_set.method, spec.open_set.k) == ("knn", 10)
    assert spec.open_set.unknown_data is None and spec.open_set.auroc is None
    assert "known held-out data only" in spec.open_set.note
    no_embeddings = [c for c in found if c.scorer.method != "knn"]
    assert choose(no_embeddings).scorer.method == "msp"


def test_a_scorer_refuses_knn_without_embeddings() -> None:
    scorer = OpenSetScorer(method="knn", temperature=1.0, references=torch.eye(3))
    with pytest.raises(ValueError, match="needs embeddings"):
        scorer(torch.zeros(1, 3), None)


def test_the_default_is_kept_unless_another_method_is_clearly_better() -> None:
    def candidate(label: str, method: str, k: int, value: float) -> Candidate:
        scorer = OpenSetScorer(method=method, temperature=1.0, k=k)  # type: ignore[arg-type]
        return Candidate(label=label, scorer=scorer, auroc=value)

    default = candidate("knn@10", "knn", 10, 0.980)
    close = candidate("knn@1", "knn", 1, 0.980 + AUROC_MARGIN / 2)
    assert choose([close, default]) is default
    clearly = candidate("energy", "energy", 1, 0.980 + 2 * AUROC_MARGIN)
    assert choose([close, default, clearly]) is clearly
