"""Prefect flows and tasks of fmnist, importable (Dask workers unpickle tasks by reference);
the files prefect.yaml names (flows/*.py) only import them from here."""
