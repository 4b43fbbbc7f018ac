"""A study's summary (the search's or a sweep's): its trials ranked on validation accuracy, and
what the trials of one run cost beyond their fits. Pure: plain records in, rows and numbers out."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

STATES = ("complete", "pruned", "failed", "running", "waiting")


@dataclass(frozen=True)
class TrialRecord:
    """A trial as the study holds it, or as its worker returns it (with its timing)."""

    number: int
    state: str  # one of STATES
    val_accuracy: float | None  # complete: its value; pruned: its last reported epoch's
    overrides: dict[str, Any]  # the searched keys (dotted)
    run_id: str | None = None
    trained_with: dict[str, Any] = field(default_factory=dict)  # its model and train sections
    error: str | None = None  # a failed trial's one line
    epochs: int = 0  # trained (fewer when pruned)
    fit_seconds: float = 0.0
    overhead_seconds: float = 0.0  # the trial's wall time minus its fit
    warmup_seconds: float = 0.0  # the worker's start (TensorFlow, the splits), before it
    config: str = ""  # the trial's network and training in one line

    def line(self) -> str:
        """`trial 7: val_accuracy 0.8891 complete (relu 512-256 ...); fit 25.1 s, overhead ...`"""
        shown = "-" if self.val_accuracy is None else f"{self.val_accuracy:.4f}"
        what = self.config or "no config"
        wall = self.fit_seconds + self.overhead_seconds
        share = f" ({self.overhead_seconds / wall:.1%})" if wall else ""
        state = self.state if self.state != "pruned" else f"pruned at epoch {self.epochs}"
        error = f": {self.error}" if self.error else ""
        warm = f"; worker started first: {self.warmup_seconds:.1f} s" if self.warmup_seconds else ""
        return (
            f"trial {self.number}: val_accuracy {shown} {state}{error} ({what}); "
            f"fit {self.fit_seconds:.1f} s, overhead {self.overhead_seconds:.2f} s{share}{warm}"
        )


@dataclass(frozen=True)
class Cost:
    """What a set of trials cost: fit and overhead seconds."""

    trials: int
    fit_seconds: float
    overhead_seconds: float
    median_overhead: float
    median_share: float  # median over trials of overhead / (fit + overhead)

    def line(self) -> str:
        return (
            f"{self.trials} trials: fit {self.fit_seconds:.1f} s, overhead "
            f"{self.overhead_seconds:.1f} s (per trial: median {self.median_overhead:.2f} s, "
            f"{self.median_share:.1%} of its wall time)"
        )


def cost(timings: Sequence[tuple[float, float]]) -> Cost | None:
    """(fit seconds, overhead seconds) per trial -> totals and medians; None for none."""
    if not timings:
        return None
    fits, overheads = zip(*timings, strict=True)
    return Cost(
        trials=len(timings),
        fit_seconds=sum(fits),
        overhead_seconds=sum(overheads),
        median_overhead=statistics.median(overheads),
        median_share=statistics.median(o / (f + o) if f + o else 0.0 for f, o in timings),
    )


def counts(trials: Sequence[TrialRecord]) -> dict[str, int]:
    """Trials per state, every state named."""
    seen = Counter(t.state for t in trials)
    return {s: seen.get(s, 0) for s in STATES}


def ranking(trials: Sequence[TrialRecord], top: int | None = 5) -> list[TrialRecord]:
    """The complete trials, best validation accuracy first (ties: the earlier trial)."""
    done = [t for t in trials if t.state == "complete" and t.val_accuracy is not None]
    return sorted(done, key=lambda t: (-float(t.val_accuracy or 0.0), t.number))[:top]


def ranked(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Every trial: the complete ones best first, then the others in the order they started."""
    done = ranking(trials, None)
    return done + [t for t in trials if t not in done]


def rows(trials: Sequence[TrialRecord], describe: Any) -> list[dict[str, Any]]:
    """Table rows (describe: overrides -> one line); a failed trial's state holds its error."""
    return [
        {
            "trial": t.number,
            "config": describe(t.overrides) if t.overrides else "",
            "val_accuracy": None if t.val_accuracy is None else round(float(t.val_accuracy), 4),
            "state": f"failed: {t.error}" if t.error else t.state,
            "run_id": t.run_id or "",
        }
        for t in trials
    ]
