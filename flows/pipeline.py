"""Entry point that prefect.yaml names; the flow lives in fmnist.flows.pipeline (importable)."""

from fmnist.flows.pipeline import pipeline

__all__ = ["pipeline"]

if __name__ == "__main__":
    pipeline()
