"""Entry point that prefect.yaml names; the flow lives in fmnist.flows.search (importable)."""

from fmnist.flows.search import search

__all__ = ["search"]

if __name__ == "__main__":
    search()
