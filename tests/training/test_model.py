"""The builder against the tutorial's three ways of building the same network."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pytest

from fmnist.params.config import LayerConfig, ModelConfig
from fmnist.training.model import build_model, summary_text

if TYPE_CHECKING:
    import keras

TUTORIAL_PARAMS = 79_510


def architecture(model: keras.Model) -> list[tuple[str, dict]]:
    """Layer classes and configs, without the names Keras numbers per session."""
    skip = {"name", "dtype"}
    return [
        (type(layer).__name__, {k: v for k, v in layer.get_config().items() if k not in skip})
        for layer in model.layers
    ]


def tutorial_models() -> list[keras.Sequential]:
    """The tutorial's code, as written (input_shape= on the first layer)."""
    import keras

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras 3 prefers keras.Input to input_shape=
        dense1 = keras.layers.Dense(100, activation="sigmoid", input_shape=(784,))
        dense2 = keras.layers.Dense(10, activation="softmax")
        as_list = keras.Sequential([dense1, dense2])
        named = keras.Sequential(
            [
                keras.layers.Dense(100, activation="sigmoid", input_shape=(784,), name="hidden"),
                keras.layers.Dense(10, activation="softmax", name="output"),
            ],
            name="패션 MNIST 모델",
        )
        added = keras.Sequential()
        added.add(keras.layers.Dense(100, activation="sigmoid", input_shape=(784,)))
        added.add(keras.layers.Dense(10, activation="softmax"))
    return [as_list, named, added]


@pytest.mark.slow  # Keras/TensorFlow
def test_default_is_the_tutorials_sigmoid_model_three_ways() -> None:
    ours = build_model(ModelConfig())
    assert ours.count_params() == TUTORIAL_PARAMS
    assert ours.name == "패션 MNIST 모델"
    assert [layer.name for layer in ours.layers] == ["hidden", "output"]
    for theirs in tutorial_models():
        assert theirs.count_params() == TUTORIAL_PARAMS
        assert architecture(theirs) == architecture(ours)
        assert theirs.input_shape == ours.input_shape == (None, 784)


@pytest.mark.slow  # Keras/TensorFlow
def test_relu_model_with_flatten() -> None:
    import keras

    cfg = ModelConfig(input="image", hidden=(LayerConfig(units=100, activation="relu"),), name="m")
    ours = build_model(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = keras.Sequential()
        theirs.add(keras.layers.Flatten(input_shape=(28, 28)))
        theirs.add(keras.layers.Dense(100, activation="relu"))
        theirs.add(keras.layers.Dense(10, activation="softmax"))
    assert ours.count_params() == theirs.count_params() == TUTORIAL_PARAMS
    assert architecture(ours)[1:] == architecture(theirs)[1:]
    assert type(ours.layers[0]).__name__ == "Flatten" and ours.input_shape == (None, 28, 28)


@pytest.mark.slow  # Keras/TensorFlow
def test_summary_text_is_what_keras_prints(capsys: pytest.CaptureFixture[str]) -> None:
    model = build_model(ModelConfig())
    text = summary_text(model)
    assert 'Model: "패션 MNIST 모델"' in text
    assert "79,510" in text and "hidden (Dense)" in text
    model.summary()  # what the tutorial calls: the same lines reach the terminal
    printed = [line.rstrip() for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [line.rstrip() for line in text.splitlines() if line.strip()] == printed


@pytest.mark.slow  # Keras/TensorFlow
def test_unicode_model_name_trains_and_predicts() -> None:
    """Keras 3 on TensorFlow refuses this name in fit and predict without the compat fix."""
    model = build_model(ModelConfig(hidden=(LayerConfig(units=8, activation="relu"),)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((32, 784), dtype=np.float32)
    model.fit(x, np.arange(32) % 10, epochs=1, verbose=0)
    assert model.predict(x, verbose=0).shape == (32, 10)
    assert model.name == "패션 MNIST 모델"


@pytest.mark.slow  # Keras/TensorFlow
def test_batch_norm_and_dropout_add_their_layers_named_after_the_dense_one() -> None:
    cfg = ModelConfig(
        hidden=(
            LayerConfig(units=32, activation="relu", name="hidden_1", batch_norm=True, dropout=0.2),
            LayerConfig(units=16, activation="elu", name="hidden_2", dropout=0.1),
            LayerConfig(units=8, activation="tanh"),
        )
    )
    model = build_model(cfg)
    kinds = [(type(layer).__name__, layer.name) for layer in model.layers]
    assert kinds[:6] == [
        ("Dense", "hidden_1"),
        ("BatchNormalization", "hidden_1_norm"),
        ("Activation", "hidden_1_activation"),
        ("Dropout", "hidden_1_dropout"),
        ("Dense", "hidden_2"),
        ("Dropout", "hidden_2_dropout"),
    ]
    assert [type(layer).__name__ for layer in model.layers[6:]] == ["Dense", "Dense"]
    assert model.layers[0].get_config()["activation"] == "linear"  # normalised, then relu
    assert model.layers[2].get_config()["activation"] == "relu"
    assert model.layers[3].get_config()["rate"] == pytest.approx(0.2)


@pytest.mark.slow  # Keras/TensorFlow
def test_defaults_build_the_tutorial_network_unchanged() -> None:
    """batch_norm false and dropout 0 (the defaults) add nothing: the tutorial's 79,510."""
    model = build_model(ModelConfig())
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dense"]
    assert model.count_params() == TUTORIAL_PARAMS
