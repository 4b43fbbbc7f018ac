"""params.yaml -> frozen, validated objects. Nothing else in fmnist reads YAML."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)

from fmnist.params.overrides import apply_dotted
from fmnist.process.errors import ConfigError

DEFAULT_MIRRORS = (
    "/usr/share/datasets/fashion-mnist",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)

Activation = Literal[
    "relu", "sigmoid", "tanh", "softmax", "softplus", "softsign", "selu", "elu", "gelu",
    "silu", "swish", "leaky_relu", "relu6", "hard_sigmoid", "exponential", "linear",
]  # fmt: skip
Optimizer = Literal["sgd", "adagrad", "rmsprop", "adam"]
Schedule = Literal["constant", "cosine"]  # the learning rate over the training
Dropout = Annotated[float, Field(ge=0, lt=1)]

# Upper bounds: generous, but a slip (`dvc exp run -S train.epochs=1e9` trained until killed)
# stops at the edge instead of running for days or filling the memory.
MAX_EPOCHS = 1000  # the tutorial trains 5 (~1 s each here), the search 5 to 40
MAX_ROWS = 60_000  # the training set: no batch, sample or epoch's count of batches is larger
MAX_UNITS = 8192  # 8x the search's widest; 784 inputs x 8192 units are 6.4M weights already
MAX_HIDDEN = 32  # the search tries 1 to 4; 32 layers of 8192 units hold 2.1 billion weights
MAX_TRIALS = 1000  # per search run (default 30), each a training of up to 40 epochs
SEED_END = 2**32  # NumPy's, scikit-learn's and Optuna's seeds are below it (else a traceback)


def _whole(value: Any, handler: ValidatorFunctionWrapHandler) -> int:
    """A whole number as written: 5.0, 1e9, 5.5, true and "5" are refused, NumPy's ints pass
    (not strict int: a whole float meets the bounds first, so 1e9 epochs says the bound)."""
    if isinstance(value, float) and value.is_integer():
        handler(value)  # 1e9 epochs: "less than or equal to 1000"
        raise ValueError("Input should be a whole number, written without a decimal point")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError("Input should be a whole number")
    return int(handler(value))


_WHOLE = WrapValidator(_whole)
Epochs = Annotated[int, Field(gt=0, le=MAX_EPOCHS), _WHOLE]
BatchSize = Annotated[int, Field(gt=0, le=MAX_ROWS), _WHOLE]
Units = Annotated[int, Field(gt=0, le=MAX_UNITS), _WHOLE]
Depth = Annotated[int, Field(gt=0, le=MAX_HIDDEN), _WHOLE]  # hidden layers
Seed = Annotated[int, Field(ge=0, lt=SEED_END), _WHOLE]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class DownloadConfig(_Frozen):
    mirrors: tuple[str, ...] = Field(default=DEFAULT_MIRRORS, min_length=1)
    # fmnist.data.http_fetch.HttpPolicy says what these limit
    timeout: Annotated[float, Field(gt=0)] = 10.0  # seconds
    retries: Annotated[int, Field(ge=0, le=10), _WHOLE] = 3
    min_speed: Annotated[float, Field(gt=0)] = 50_000  # bytes/s


class PrepareConfig(_Frozen):
    val_size: Annotated[float, Field(gt=0, lt=1)] = 0.2
    seed: Seed = 42
    stratify: bool = False


class LayerConfig(_Frozen):
    units: Units
    activation: Activation
    name: str | None = None
    # beyond the tutorial (the search's; the defaults add nothing): see training.model
    batch_norm: bool = False
    dropout: Dropout = 0.0


class ModelConfig(_Frozen):
    name: str = Field(default="패션 MNIST 모델", min_length=1)
    input: Literal["flat", "image"] = "flat"
    hidden: tuple[LayerConfig, ...] = Field(
        default=(LayerConfig(units=100, activation="sigmoid", name="hidden"),),
        max_length=MAX_HIDDEN,
    )
    output_name: str | None = "output"

    @field_validator("name")
    @classmethod
    def _no_slash(cls, name: str) -> str:
        if "/" in name:
            raise ValueError("cannot contain '/' (Keras separates name scopes with it)")
        return name


class TrainConfig(_Frozen):
    optimizer: Optimizer = "rmsprop"
    learning_rate: Annotated[float, Field(gt=0)] = 0.001
    schedule: Schedule = "constant"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0  # sgd only
    epochs: Epochs = 5
    batch_size: BatchSize = 32
    seed: Seed = 42
    # batches per call into the compiled graph: the same math, fit ~2.4x faster here
    steps_per_execution: Annotated[int, Field(gt=0, le=MAX_ROWS), _WHOLE] = 100


class EvaluateConfig(_Frozen):
    batch_size: BatchSize = 1000


class RegisterConfig(_Frozen):
    model_name: str = Field(default="fashion-mnist", min_length=1, pattern=r"^[\w.\-]+$")
    # promotion to `champion`: test accuracy >= min_accuracy and > the champion's + min_delta
    min_accuracy: Annotated[float, Field(ge=0, le=1)] = 0.80
    min_delta: Annotated[float, Field(ge=0, le=1)] = 0.001


class ScoreConfig(_Frozen):
    experiment: str = Field(default="fashion-mnist-batch-score", min_length=1)
    batch_size: BatchSize = 1000  # images per prediction call


class MonitorConfig(_Frozen):
    # a batch drifted when at least drift_share of its features did (monitoring.drift)
    drift_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    feature_threshold: Annotated[float, Field(gt=0)] = 0.1
    reference_rows: Annotated[int, Field(ge=100, le=MAX_ROWS), _WHOLE] = 10000
    # Smaller batches are not judged: on the test set, 200 random images drifted by sampling
    # noise alone in 2 draws of 5, 1000 images in none.
    min_rows: Annotated[int, Field(gt=0, le=MAX_ROWS), _WHOLE] = 1000
    seed: Seed = 42
    # started (not awaited) when a batch drifted; "" never retrains
    retrain_deployment: str = Field(default="fashion-mnist-pipeline/default", pattern=r"^$|^.+/.+$")


def _ordered(pair: tuple[Any, Any]) -> tuple[Any, Any]:
    if pair[0] > pair[1]:
        raise ValueError(f"empty range [{pair[0]}, {pair[1]}] (low > high)")
    return pair


T = TypeVar("T")
Range = Annotated[tuple[T, T], AfterValidator(_ordered)]  # [low, high], both included
NonEmpty = Annotated[tuple[T, ...], Field(min_length=1)]


class SearchSpace(_Frozen):
    """What `fmnist search` may try: plain Dense networks the model section can express."""

    # Each end has the type of the param it is tried as: no trial gets a value params refuse.
    layers: Range[Depth] = (1, 4)
    units: Range[Units] = (32, 1024)  # per layer, log scale
    activations: NonEmpty[Activation] = ("relu", "elu", "gelu", "tanh")
    dropout: Range[float] = (0.0, 0.5)  # per layer
    batch_norm: NonEmpty[bool] = (False, True)
    optimizers: NonEmpty[Optimizer] = ("sgd", "adagrad", "rmsprop", "adam")
    learning_rate: Range[float] = (1e-4, 1e-2)  # log scale
    schedules: NonEmpty[Schedule] = ("constant", "cosine")
    batch_sizes: NonEmpty[BatchSize] = (32, 64, 128, 256)
    epochs: Range[Epochs] = (5, 40)

    @field_validator("learning_rate", "dropout")
    @classmethod
    def _in_bounds(cls, pair: tuple[float, float], info: ValidationInfo) -> tuple[float, float]:
        if info.field_name == "learning_rate" and pair[0] <= 0:
            raise ValueError(f"must be above 0, got [{pair[0]}, {pair[1]}]")
        if info.field_name == "dropout" and (pair[0] < 0 or pair[1] >= 1):
            raise ValueError(f"a rate in [0, 1), got [{pair[0]}, {pair[1]}]")
        return pair


class SearchConfig(_Frozen):
    """`fmnist search`: an Optuna study (TPE sampler, median pruner on val_accuracy)."""

    study: str = Field(default="fashion-mnist-search", min_length=1, pattern=r"^[\w.\-]+$")
    trials: Annotated[int, Field(gt=0, le=MAX_TRIALS), _WHOLE] = 30
    timeout: Annotated[float, Field(ge=0)] = 3600  # seconds; no new trial starts after it (0: none)
    seed: Seed = 42  # the sampler's
    startup_trials: Annotated[int, Field(ge=0), _WHOLE] = 5  # random trials before TPE and pruning
    warmup_epochs: Annotated[int, Field(ge=0, le=MAX_EPOCHS), _WHOLE] = 3
    # The best is trained again through DVC with prepare.val_size this small (more of the
    # data to learn from, still a held-out check); None: the split the trials had.
    refit_val_size: Annotated[float, Field(gt=0, lt=1)] | None = 0.05
    space: SearchSpace = SearchSpace()


class TrackingConfig(_Frozen):
    experiment: str = Field(default="fashion-mnist", min_length=1)


class Params(_Frozen):
    download: DownloadConfig = DownloadConfig()
    prepare: PrepareConfig = PrepareConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    # `register` would shadow BaseModel.register; the YAML key stays `register`.
    register_: RegisterConfig = Field(default=RegisterConfig(), alias="register")
    tracking: TrackingConfig = TrackingConfig()
    score: ScoreConfig = ScoreConfig()
    monitor: MonitorConfig = MonitorConfig()
    search: SearchConfig = SearchConfig()


def parse_params(raw: Mapping[str, Any] | None, source: str = "params.yaml") -> Params:
    """Validate a mapping into Params; any problem is one ConfigError line naming each bad key,
    what it holds and what is allowed."""
    try:
        return Params.model_validate(dict(raw or {}))
    except ValidationError as exc:
        parts = []
        for err in exc.errors(include_url=False):
            key, got = ".".join(str(p) for p in err["loc"]), err.get("input")
            message = str(err["msg"]).removeprefix("Value error, ")  # our validators' own words
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            unknown = err["type"] == "extra_forbidden"
            parts.append(f"{key}: unknown key" if unknown else f"{key}: {message}{shown}")
        raise ConfigError(f"{source}: {'; '.join(parts)}") from None


def load_params(path: Path, overrides: Mapping[str, Any] | None = None) -> Params:
    """Read and validate params.yaml (with dotted-key overrides applied); errors are one line."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such params file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    if not overrides:
        return parse_params(raw, source=str(path))
    source = f"{path} with {', '.join(overrides)} overridden"
    return parse_params(apply_dotted(raw or {}, overrides), source=source)
