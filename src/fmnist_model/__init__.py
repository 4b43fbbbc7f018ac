"""The code every registered version carries (MLflow `code_paths`): it imports nothing of fmnist,
so a version serves wherever MLflow runs, with the code it was logged with."""
