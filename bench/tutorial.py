"""The tutorial's own code (shared/reference/tutorial-deep-neural-network.md), step by step.

Only additions: timing around fit, the epochs from the command line (5, the tutorial's, by
default), and printing the results for bench_train.py. The data comes
from Keras' cache folder, which bench_train.py fills with the local copy of the official files
(KERAS_HOME), so load_data() reads them instead of downloading.
"""

import json
import sys
import time

t0 = time.perf_counter()
from tensorflow import keras  # noqa: E402

(train_input, train_target), (test_input, test_target) = keras.datasets.fashion_mnist.load_data()

from sklearn.model_selection import train_test_split  # noqa: E402

train_scaled = train_input / 255.0
train_scaled = train_scaled.reshape(-1, 28 * 28)

train_scaled, val_scaled, train_target, val_target = train_test_split(
    train_scaled, train_target, test_size=0.2, random_state=42
)

model = keras.Sequential()
model.add(keras.layers.Dense(100, activation="sigmoid", input_shape=(784,)))
model.add(keras.layers.Dense(10, activation="softmax"))
model.summary()

model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])

fit_start = time.perf_counter()
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
history = model.fit(train_scaled, train_target, epochs=epochs)
fit_seconds = time.perf_counter() - fit_start

print(
    "BENCH "
    + json.dumps(
        {
            "fit_seconds": fit_seconds,
            "accuracy": float(history.history["accuracy"][-1]),
            "script_seconds": time.perf_counter() - t0,
        }
    )
)
