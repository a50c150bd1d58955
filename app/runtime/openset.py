"""Calibrated probabilities, open-set scores and decisions: one implementation for both halves.

Training measures and chooses with these functions; serving answers with the same ones, so the
threshold in a card means the same thing in both places.
"""

from dataclasses import dataclass
from typing import Literal

import torch

from app.runtime.card import CalibrationSpec, OpenSetMethod

Decision = Literal["match", "unknown", "uncertain"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenSetScorer:
    """Everything needed to turn a batch's logits (and embeddings) into unknown scores."""

    method: OpenSetMethod
    temperature: float
    references: torch.Tensor | None = None  # knn: [M, D], L2-normalised
    k: int = 1

    def __call__(self, logits: torch.Tensor, embeddings: torch.Tensor | None) -> torch.Tensor:
        """One score per image, higher = less like anything the model was trained on."""
        if self.method == "msp":
            return msp_score(logits, self.temperature)
        if self.method == "energy":
            return energy_score(logits, self.temperature)
        if embeddings is None or self.references is None:
            raise ValueError("the knn score needs embeddings and reference embeddings")
        return knn_score(embeddings, self.references, self.k)


def calibrated_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax of temperature-scaled logits."""
    return (logits.float() / temperature).softmax(dim=1)


def msp_score(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """1 - the largest calibrated probability (Hendrycks & Gimpel, 2017)."""
    return 1.0 - calibrated_probabilities(logits, temperature).amax(dim=1)


def energy_score(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The free energy -T * logsumexp(logits / T) (Liu et al., 2020); high for unknowns."""
    return -temperature * torch.logsumexp(logits.float() / temperature, dim=1)


def knn_score(embeddings: torch.Tensor, references: torch.Tensor, k: int) -> torch.Tensor:
    """1 - cosine similarity to the k-th nearest reference embedding (Sun et al., 2022)."""
    similarity = embeddings.float() @ references.float().T
    kth = similarity.topk(min(k, references.shape[0]), dim=1).values[:, -1]
    return 1.0 - kth


def scorer_for(calibration: CalibrationSpec, references: torch.Tensor | None) -> OpenSetScorer:
    """The scorer a card's calibration describes."""
    open_set = calibration.open_set
    return OpenSetScorer(
        method=open_set.method,
        temperature=calibration.temperature,
        references=references,
        k=open_set.k or 1,
    )


def decide(
    top_probability: float, unknown_score: float, *, accept_probability: float, threshold: float
) -> Decision:
    """unknown past the open-set threshold; match when confident enough; else uncertain."""
    if unknown_score > threshold:
        return "unknown"
    if top_probability >= accept_probability:
        return "match"
    return "uncertain"
