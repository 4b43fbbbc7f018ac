"""The promotion rule, pure: which registered version becomes `champion`, and why. Aliases
only (MLflow's stages are deprecated): every new version is `challenger`; `champion` serves."""

from __future__ import annotations

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
    accuracy: float | None = None  # the judged version's METRIC
    below_champion: bool = False  # promoted by hand below the champion (a rollback, say)
    already_champion: bool = False  # the version holds champion already: nothing moves

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
    """At least min_accuracy, and more than min_delta above the champion. By hand
    (`require_better=False`) only the threshold applies; `force` skips it too."""
    version, current = champion if champion else (None, None)
    if accuracy < min_accuracy and not force:
        reason = f"{METRIC} {accuracy:.4f} is below min_accuracy {min_accuracy:.4f}"
        return Decision(False, reason, version, current, accuracy)
    if force or not require_better:  # by hand: a worse version too (said so), to roll back
        below = current is not None and accuracy < current
        reason = "forced by hand" if force else f"promoted by hand ({METRIC} {accuracy:.4f})"
        return Decision(True, reason, version, current, accuracy, below_champion=below)
    if champion is None or current is None:
        return Decision(True, f"no champion yet ({METRIC} {accuracy:.4f})", accuracy=accuracy)
    gain = accuracy - current
    if gain > min_delta:
        reason = f"{METRIC} {accuracy:.4f} beats champion v{version} ({current:.4f}) by {gain:+.4f}"
        return Decision(True, reason, version, current, accuracy)
    reason = (
        f"{METRIC} {accuracy:.4f} does not beat champion v{version} ({current:.4f}) "
        f"by more than min_delta {min_delta:.4f}"
    )
    return Decision(False, reason, version, current, accuracy)


def by_hand_lines(name: str, version: int, decision: Decision) -> list[str]:
    """What a promotion by hand says: a worse version's warning, then the outcome."""
    if decision.already_champion:
        return [f"{name} v{version} is already @{CHAMPION}: nothing to move"]
    lines = [f"{name} v{version} is now @{CHAMPION} ({decision.reason})"]
    if decision.below_champion:
        lines.insert(
            0,
            f"{name} v{version} has {METRIC} {decision.accuracy:.4f}, below champion "
            f"v{decision.compared_version}'s {decision.compared_accuracy:.4f}: "
            "promoting it by hand anyway",
        )
    return lines
