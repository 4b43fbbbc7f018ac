"""The `fmnist` command: one subcommand per DVC stage, each a thin call into stages.py."""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from fmnist.errors import FmnistError

app = typer.Typer(
    help="Fashion-MNIST with Keras: DVC stages, MLflow tracking and registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
F = TypeVar("F", bound=Callable[..., Any])

ParamsOpt = Annotated[Path, typer.Option("--params", help="The params file.")]
TrackingOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="MLflow tracking URI (default: sqlite:///mlflow.db in this folder).",
        show_default=False,
    ),
]

# Paths that more than one stage takes, named once.
DataOpt = Annotated[Path, typer.Option(help="Folder of prepared splits.")]
ModelOpt = Annotated[Path, typer.Option(help="The model file (.keras).")]
RunOpt = Annotated[Path, typer.Option(help="The MLflow run record (JSON).")]
SummaryOpt = Annotated[Path, typer.Option(help="The Keras summary text.")]
MetricsOpt = Annotated[Path, typer.Option(help="Metrics written (JSON).")]


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def user_errors(command: F) -> F:
    """Users' mistakes end as one line on stderr and the error's exit code, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # A terminated stage (dvc, Prefect cancelling) unwinds like Ctrl-C: runs end KILLED,
        # temporary files are removed.
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        try:
            return command(*args, **kwargs)
        except FmnistError as exc:
            typer.echo(f"fmnist {command.__name__}: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _params(path: Path) -> Any:
    from fmnist.config import load_params

    return load_params(path)


def _tracking_uri(given: str | None) -> str:
    from fmnist.tracking import default_tracking_uri, workspace_root

    return given or default_tracking_uri(workspace_root(Path.cwd()))


@app.command()
@user_errors
def download(
    out: Annotated[Path, typer.Option(help="Folder for the verified raw files.")] = Path(
        "data/raw"
    ),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Fetch and verify the four Fashion-MNIST files (FMNIST_DATA_MIRROR is tried first)."""
    from fmnist.stages import run_download

    served = run_download(_params(params), out, os.environ.get("FMNIST_DATA_MIRROR"))
    for name, mirror in served.items():
        typer.echo(f"{out / name}: verified ({mirror})")


@app.command()
@user_errors
def prepare(
    raw: Annotated[Path, typer.Option(help="Folder of raw IDX files.")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="Folder for the .npz splits.")] = Path("data/prepared"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Scale to float32 in [0, 1] and split train/val as the tutorial does."""
    from fmnist.stages import run_prepare

    sizes = run_prepare(_params(params), raw, out)
    typer.echo(" ".join(f"{split}={n}" for split, n in sizes.items()))


@app.command()
@user_errors
def train(
    data: DataOpt = Path("data/prepared"),
    model: ModelOpt = Path("models/model.keras"),
    summary: SummaryOpt = Path("models/summary.txt"),
    run: RunOpt = Path("models/run.json"),
    history: Annotated[Path, typer.Option(help="Per-epoch CSV.")] = Path("plots/train_history.csv"),
    metrics: MetricsOpt = Path("metrics/train.json"),
    params: ParamsOpt = Path("params.yaml"),
    tracking_uri: TrackingOpt = None,
) -> None:
    """Build, compile and fit the model from params; track everything in MLflow."""
    from fmnist.stages import TrainOutputs, run_train

    outputs = TrainOutputs(model=model, summary=summary, run=run, history=history, metrics=metrics)
    last = run_train(_params(params), data, outputs, _tracking_uri(tracking_uri), Path.cwd())
    typer.echo(" ".join(f"{k}={v:.4f}" for k, v in last.items()))


@app.command()
@user_errors
def evaluate(
    model: ModelOpt = Path("models/model.keras"),
    data: DataOpt = Path("data/prepared"),
    run: RunOpt = Path("models/run.json"),
    metrics: MetricsOpt = Path("metrics/evaluate.json"),
    classes: Annotated[Path, typer.Option(help="Per-class report.")] = Path("metrics/classes.json"),
    confusion_csv: Annotated[Path, typer.Option(help="Confusion plot data.")] = Path(
        "plots/confusion.csv"
    ),
    confusion_png: Annotated[Path, typer.Option(help="Confusion image.")] = Path(
        "plots/confusion.png"
    ),
    params: ParamsOpt = Path("params.yaml"),
    tracking_uri: TrackingOpt = None,
) -> None:
    """Test loss and accuracy, per-class report, confusion matrix; logged to the train run."""
    from fmnist.stages import EvaluateOutputs, run_evaluate

    outputs = EvaluateOutputs(metrics, classes, confusion_csv, confusion_png)
    headline = run_evaluate(_params(params), model, data, run, outputs, _tracking_uri(tracking_uri))
    typer.echo(" ".join(f"{k}={v:.4f}" for k, v in headline.items()))


@app.command()
@user_errors
def register(
    run: RunOpt = Path("models/run.json"),
    metrics: Annotated[Path, typer.Option(help="Test metrics to read (JSON).")] = Path(
        "metrics/evaluate.json"
    ),
    summary: SummaryOpt = Path("models/summary.txt"),
    out: Annotated[Path, typer.Option(help="The registration record.")] = Path(
        "models/registered.json"
    ),
    params: ParamsOpt = Path("params.yaml"),
    tracking_uri: TrackingOpt = None,
) -> None:
    """Register the trained model as a new version with alias `challenger`."""
    from fmnist.stages import run_register

    record = run_register(_params(params), run, metrics, summary, out, _tracking_uri(tracking_uri))
    typer.echo(f"registered {record['name']} version {record['version']} as @{record['alias']}")


stack_app = typer.Typer(
    help="The local stack: Prefect server + worker + deployments, MLflow UI (127.0.0.1).",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")
StateOpt = Annotated[Path, typer.Option(help="Where the stack keeps pids, logs, Prefect home.")]


@stack_app.command("up")
@user_errors
def stack_up(
    prefect_port: Annotated[int, typer.Option(help="Prefect server port.")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow server port.")] = 5000,
    state: StateOpt = Path(".stack"),
    tracking_uri: TrackingOpt = None,
) -> None:
    """Start everything, wait until each answers its health check, print the URLs."""
    from fmnist.stack import StackConfig, up

    root = Path.cwd().resolve()
    cfg = StackConfig(
        root, (root / state).resolve(), prefect_port, mlflow_port, tracking_uri=tracking_uri
    )
    up(cfg, echo=typer.echo)
    api = f"http://127.0.0.1:{prefect_port}/api"
    typer.echo(
        f"\nUp. In this folder Prefect uses {api} (prefect.toml); elsewhere:\n"
        f"  export PREFECT_API_URL={api}\n"
        "Run the pipeline:\n  prefect deployment run 'fashion-mnist-pipeline/default' --watch"
    )


@stack_app.command("down")
@user_errors
def stack_down(state: StateOpt = Path(".stack")) -> None:
    """Stop exactly the processes `stack up` started."""
    from fmnist.stack import down

    stopped = down(Path.cwd().resolve(), state.resolve())
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack_app.command("status")
@user_errors
def stack_status(state: StateOpt = Path(".stack")) -> None:
    """What `stack up` started: pid, running, healthy, URL."""
    from fmnist.stack import status

    rows = status(state.resolve())
    if not rows:
        typer.echo("down (nothing recorded)")
    for service, running, ok in rows:
        state_word = "healthy" if ok else ("running" if running else "stopped")
        typer.echo(f"{service.name:15} pid {service.pid:<7} {state_word:8} {service.url}")


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banner quiet
    app(prog_name="fmnist")


if __name__ == "__main__":
    main()
