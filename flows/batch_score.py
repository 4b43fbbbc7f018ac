"""Entry point that prefect.yaml names; the flow lives in fmnist.flows.batch_score (importable)."""

from fmnist.flows.batch_score import batch_score

__all__ = ["batch_score"]

if __name__ == "__main__":
    import sys

    batch_score(sys.argv[1])
