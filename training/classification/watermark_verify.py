"""Does a suspect model carry our watermark? Its accuracy on the key's triggers against chance.

A model that never learned the triggers labels each one right with probability 1/C whatever it
predicts, because the key drew the target labels uniformly and independently of the images; so
the number right is Binomial(n, 1/C) under "not ours", and the one-sided tail is an exact
p-value. The model is loaded and run as the service runs it (its card's input rule), so a copy
is judged on what it really answers, not on what its card claims.
"""

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from app.errors import ModelLoadError
from app.runtime.card import WatermarkSpec
from training.classification.artifact import load_classifier, model_outputs
from training.classification.watermark import DEFAULT_TRIGGERS, WatermarkKey, trigger_set
from training.core.datacheck import DatasetError

logger = logging.getLogger(__name__)

# "Present" needs odds against chance of a million to one: false claims of ownership are costly,
# and a model that learned the triggers clears it by dozens of orders of magnitude.
DEFAULT_ALPHA = 1e-6


@dataclass(frozen=True, kw_only=True)
class WatermarkCheck:
    """One model checked against one key."""

    model: str
    sha256: str
    key_id: str
    classes: int
    triggers: int
    correct: int
    p_value: Fraction  # exact
    alpha: float
    card_watermark: WatermarkSpec | None  # what the model's card claims, if anything

    @property
    def accuracy(self) -> float:
        """Share of triggers given the key's label."""
        return self.correct / self.triggers

    @property
    def chance(self) -> float:
        """The accuracy expected of a model that never saw the triggers."""
        return 1.0 / self.classes

    @property
    def present(self) -> bool:
        """Whether the accuracy is too high to be chance at the chosen level."""
        return self.p_value < self.alpha

    @property
    def verdict(self) -> str:
        """The finding in words."""
        return "watermark present" if self.present else "no evidence of this key's watermark"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as `watermark verify --json` writes it."""
        card = self.card_watermark
        return {
            "model": self.model,
            "sha256": self.sha256,
            "key_id": self.key_id,
            "classes": self.classes,
            "triggers": self.triggers,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "chance": self.chance,
            "p_value": float(self.p_value),
            "log10_p_value": log10_p_value(self.p_value),
            "alpha": self.alpha,
            "present": self.present,
            "verdict": self.verdict,
            "card_watermark": None if card is None else card.model_dump(),
        }


def binomial_tail(correct: int, trials: int, classes: int) -> Fraction:
    """P(X >= correct) for X ~ Binomial(trials, 1/classes), exactly: at least this many right
    by luck. Whole numbers throughout, so even 1e-300 comes out exact, not rounded to 0."""
    if not 0 <= correct <= trials:
        raise ValueError("correct must be between 0 and trials")
    wrong = classes - 1
    ways = sum(math.comb(trials, k) * wrong ** (trials - k) for k in range(correct, trials + 1))
    return Fraction(ways, classes**trials)


def binomial_p_value(correct: int, trials: int, classes: int) -> float:
    """The one-sided binomial p-value as a float (0.0 only below about 1e-308)."""
    return float(binomial_tail(correct, trials, classes))


def log10_p_value(p_value: Fraction) -> float:
    """log10 of an exact p-value, which stays finite where the float underflows."""
    return math.log10(p_value.numerator) - math.log10(p_value.denominator)


def verify_watermark(
    model_dir: Path,
    key: WatermarkKey,
    *,
    triggers: int | None = None,
    alpha: float = DEFAULT_ALPHA,
    workers: int = 0,
) -> WatermarkCheck:
    """Check `model_dir` for `key`'s watermark.

    `triggers`: how many to show; by default the count the card records for this key, else the
    training default. Fix it before looking: trying several counts and keeping the smallest
    p-value would overstate the evidence.
    """
    try:
        loaded = load_classifier(model_dir)
    except ModelLoadError as error:
        raise DatasetError(str(error)) from error
    card = loaded.card
    claimed = card.watermark
    if triggers is None:
        ours = claimed is not None and claimed.key_id == key.key_id
        triggers = claimed.trigger_count if ours and claimed else DEFAULT_TRIGGERS
    found = trigger_set(key, triggers, len(card.labels), card.input)
    targets = found.images.targets
    outputs = model_outputs(
        loaded, found.images, targets, batch_size=256, workers=workers, progress=False
    )
    predicted = outputs.logits.argmax(dim=1)
    correct = int((predicted == torch.tensor(targets)).sum())
    return WatermarkCheck(
        model=card.name,
        sha256=loaded.sha256,
        key_id=key.key_id,
        classes=len(card.labels),
        triggers=triggers,
        correct=correct,
        p_value=binomial_tail(correct, triggers, len(card.labels)),
        alpha=alpha,
        card_watermark=claimed,
    )


def format_check(check: WatermarkCheck) -> str:
    """The finding for people."""
    claimed = check.card_watermark
    if claimed is None:
        card_note = "records no watermark (the finding above does not depend on it)"
    elif claimed.key_id == check.key_id:
        card_note = (
            f"records this key's watermark ({claimed.trigger_count} triggers, accuracy "
            f"{claimed.trigger_accuracy_at_export:.3f} at export)"
        )
    else:
        card_note = f"records a watermark of another key ({claimed.key_id})"
    return "\n".join(
        [
            f"model {check.model} (sha256 {check.sha256[:12]}), watermark key {check.key_id}",
            f"triggers: {check.correct}/{check.triggers} given the key's label (accuracy "
            f"{check.accuracy:.3f}; chance {check.chance:.3f} with {check.classes} classes)",
            f"p-value: {_scientific(check.p_value)} (one-sided binomial: at least "
            f"{check.correct} of {check.triggers} right by chance)",
            f"verdict: {check.verdict} (threshold p < {check.alpha:g})",
            f"card: {card_note}",
        ]
    )


def _scientific(p_value: Fraction) -> str:
    """0.0702, or 2.6e-7 from the logarithm, so values below the float range print too."""
    if p_value >= Fraction(1, 10_000):
        return f"{float(p_value):.3g}"
    exponent = log10_p_value(p_value)
    power = math.floor(exponent)
    return f"{10 ** (exponent - power):.2g}e{power}"
