"""The served model: the code every registered fmnist version carries (MLflow `code_paths`).

Imports nothing of `fmnist` and needs only what the model's requirements name (Keras,
TensorFlow, NumPy, pandas, MLflow), so a version loads and serves wherever MLflow runs
(`mlflow models serve --env-manager uv`), with the code it was logged with, whatever
fmnist's code becomes later. fmnist itself takes the image constants and the scaling from
here, so training and serving cannot disagree.
"""
