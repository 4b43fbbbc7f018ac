"""Prefect flows and tasks of fmnist, importable (Dask workers unpickle tasks by reference).

The files prefect.yaml names (flows/*.py at the project's root) only import them from here.
"""
