"""fmnist: an MLOps workflow for Keras on Fashion-MNIST."""

__version__ = "0.1.0"
