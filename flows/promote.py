"""Entry point that prefect.yaml names; the flow lives in fmnist.flows.pipeline (importable)."""

from fmnist.flows.pipeline import promote_model

__all__ = ["promote_model"]

if __name__ == "__main__":
    import sys

    promote_model(int(sys.argv[1]))
