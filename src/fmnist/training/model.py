"""build_model(ModelConfig) -> keras.Sequential, the tutorial's networks from params."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fmnist.params.config import LayerConfig, ModelConfig
from fmnist_model.images import CLASS_NAMES, FLAT_SIZE, IMAGE_SHAPE

if TYPE_CHECKING:
    import keras

N_CLASSES = len(CLASS_NAMES)


def build_model(cfg: ModelConfig) -> keras.Sequential:
    """Input -> [Flatten] -> hidden Dense layers -> Dense(10, softmax), named cfg.name."""
    from fmnist.process.imports import load_keras

    keras = load_keras()
    flat = cfg.input == "flat"  # the tutorial's (784,) input, else (28, 28) and a Flatten layer
    layers: list[Any] = [] if flat else [keras.layers.Flatten()]
    for h in cfg.hidden:
        layers += hidden_block(keras, h)
    layers.append(keras.layers.Dense(N_CLASSES, activation="softmax", name=cfg.output_name))
    return keras.Sequential(
        [keras.Input(shape=(FLAT_SIZE,) if flat else IMAGE_SHAPE), *layers], name=cfg.name
    )


def hidden_block(keras: Any, layer: LayerConfig) -> list[Any]:
    """One hidden layer's Keras layers; the extra ones are named after its Dense layer."""
    named = (lambda suffix: f"{layer.name}_{suffix}") if layer.name else (lambda suffix: None)
    if layer.batch_norm:
        block: list[Any] = [
            keras.layers.Dense(layer.units, name=layer.name),
            keras.layers.BatchNormalization(name=named("norm")),
            keras.layers.Activation(layer.activation, name=named("activation")),
        ]
    else:
        block = [keras.layers.Dense(layer.units, activation=layer.activation, name=layer.name)]
    if layer.dropout:
        block.append(keras.layers.Dropout(layer.dropout, name=named("dropout")))
    return block


def summary_text(model: keras.Model) -> str:
    """model.summary() exactly as Keras prints it, as plain text."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, *_, **__: lines.append(line), line_length=None)
    return "\n".join(lines) + "\n"
