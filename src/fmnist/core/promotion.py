"""The promotion rule, pure: which registered version becomes `champion`, and why.

Aliases only (MLflow's stages are deprecated): every new version is `challenger`; one is
`champion`, the version that serves. The registry I/O that applies the rule is registry.py.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

CHALLENGER = "challenger"
CHAMPION = "champion"
METRIC = "test_accuracy"  # the promotion rule compares registered versions on the test set


@dataclass(frozen=True)
class Decision:
    """Whether a version becomes champion, why, and what it was compared with."""

    promote: bool
    reason: str
    compared_version: int | None = None
    compared_accuracy: float | None = None

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Decision | None:
        """The decision as_tags recorded on a version; None if none was."""
        if "fmnist.promotion.reason" not in tags:
            return None
        promoted = tags.get("fmnist.promotion.promoted") == "true"
        return cls(promoted, tags["fmnist.promotion.reason"])

    def as_tags(self) -> dict[str, str]:
        return {
            "fmnist.promotion.promoted": str(self.promote).lower(),
            "fmnist.promotion.reason": self.reason,
            "fmnist.promotion.compared_version": str(self.compared_version or ""),
            "fmnist.promotion.compared_accuracy": (
                "" if self.compared_accuracy is None else f"{self.compared_accuracy:.4f}"
            ),
        }


def decide_promotion(
    accuracy: float,
    champion: tuple[int, float] | None,
    *,
    min_accuracy: float,
    min_delta: float,
    require_better: bool = True,
    force: bool = False,
) -> Decision:
    """The promotion rule: at least min_accuracy, and more than min_delta above the champion.

    By hand (`require_better=False`) only the threshold applies; `force` skips it too.
    """
    version, current = champion if champion else (None, None)
    if accuracy < min_accuracy and not force:
        reason = f"{METRIC} {accuracy:.4f} is below min_accuracy {min_accuracy:.4f}"
        return Decision(False, reason, version, current)
    if force:
        return Decision(True, "forced by hand", version, current)
    if not require_better:
        return Decision(True, f"promoted by hand ({METRIC} {accuracy:.4f})", version, current)
    if champion is None or current is None:
        return Decision(True, f"no champion yet ({METRIC} {accuracy:.4f})")
    gain = accuracy - current
    if gain > min_delta:
        reason = f"{METRIC} {accuracy:.4f} beats champion v{version} ({current:.4f}) by {gain:+.4f}"
        return Decision(True, reason, version, current)
    reason = (
        f"{METRIC} {accuracy:.4f} does not beat champion v{version} ({current:.4f}) "
        f"by more than min_delta {min_delta:.4f}"
    )
    return Decision(False, reason, version, current)


def previous_champion(
    history: Sequence[int], current: int, existing: Collection[int]
) -> int | None:
    """The version that held champion before `current` and still exists, if any."""
    for version in reversed(history):
        if version != current and version in existing:
            return version
    return None
