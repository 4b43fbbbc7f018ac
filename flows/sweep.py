"""Entry point that prefect.yaml names; the flow lives in fmnist.flows.sweep (importable)."""

from fmnist.flows.sweep import sweep

__all__ = ["sweep"]

if __name__ == "__main__":
    sweep()
