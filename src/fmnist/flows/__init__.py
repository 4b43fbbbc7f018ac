"""Prefect flows and tasks, importable (Dask workers unpickle tasks by reference)."""
