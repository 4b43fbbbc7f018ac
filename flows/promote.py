"""Entry point that prefect.yaml names; the flow lives in fmnist.flows.promote (importable)."""

from fmnist.flows.promote import promote_model

__all__ = ["promote_model"]

if __name__ == "__main__":
    import sys

    promote_model(int(sys.argv[1]))
