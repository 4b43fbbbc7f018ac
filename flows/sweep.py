"""Entry point that prefect.yaml names; the flow lives in fmnist.flows.search (importable)."""

from fmnist.flows.search import sweep

__all__ = ["sweep"]

if __name__ == "__main__":
    sweep()
