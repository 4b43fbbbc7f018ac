"""The `fmnist` command: one subcommand per DVC stage, each a thin call into stages.py."""

from __future__ import annotations

import functools
import gc
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

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
        except Exception as exc:
            from fmnist.errors import TrackingError
            from fmnist.tracking import store_error_line

            line = store_error_line(exc)  # sqlite and concurrent writers: name the fix
            if line is None and not isinstance(exc, FmnistError):
                raise  # a bug: the traceback is for us
            code = TrackingError.exit_code if line else getattr(exc, "exit_code", 1)
            typer.echo(f"fmnist {command.__name__}: error: {line or exc}", err=True)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


def _params(path: Path) -> Any:
    from fmnist.config import load_params

    return load_params(path)


def _tracking_uri(given: str | None) -> str:
    from fmnist.tracking import resolve_tracking_uri

    return resolve_tracking_uri(given, Path.cwd())


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
    from fmnist.tracking import PARENT_ENV

    parent = os.environ.get(PARENT_ENV) or None  # a sweep's run: this one becomes its child
    last = run_train(
        _params(params), data, outputs, _tracking_uri(tracking_uri), Path.cwd(), parent
    )
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
    from fmnist.keras_compat import infer_without_tensorflow
    from fmnist.stages import EvaluateOutputs, run_evaluate

    infer_without_tensorflow()

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
    aliases = " ".join(f"@{a}" for a in record["aliases"])
    typer.echo(f"registered {record['name']} version {record['version']} as {aliases}")
    typer.echo(f"promotion: {record['promotion']}")


@app.command()
@user_errors
def models(params: ParamsOpt = Path("params.yaml"), tracking_uri: TrackingOpt = None) -> None:
    """The registered model's versions: aliases, test accuracy, optimizer, created."""
    from fmnist.registry import list_versions

    name = _params(params).register_.model_name
    rows = list_versions(_tracking_uri(tracking_uri), name)
    if not rows:
        typer.echo(f"{name}: no versions yet (run `make run`)")
        return
    typer.echo(f"{'version':>7}  {'aliases':22}  {'test_accuracy':>13}  {'optimizer':9}  created")
    for r in rows:
        aliases = " ".join(f"@{a}" for a in r.aliases)
        typer.echo(
            f"{r.version:>7}  {aliases:22}  {r.test_accuracy:>13}  {r.optimizer:9}  {r.created}"
        )


@app.command()
@user_errors
def promote(
    version: Annotated[int, typer.Option(help="The version to make `champion`.")],
    force: Annotated[bool, typer.Option(help="Promote even below register.min_accuracy.")] = False,
    params: ParamsOpt = Path("params.yaml"),
    tracking_uri: TrackingOpt = None,
) -> None:
    """Make a version `champion` by hand (it must reach register.min_accuracy unless --force)."""
    from fmnist.stages import run_promote

    p = _params(params)
    reason = run_promote(p, version, force, _tracking_uri(tracking_uri))
    typer.echo(f"{p.register_.model_name} v{version} is now @champion ({reason})")


@app.command()
@user_errors
def rollback(params: ParamsOpt = Path("params.yaml"), tracking_uri: TrackingOpt = None) -> None:
    """Give `champion` back to the version that held it before."""
    from fmnist.registry import rollback as rollback_champion

    name = _params(params).register_.model_name
    before, after = rollback_champion(_tracking_uri(tracking_uri), name)
    typer.echo(f"{name}: @champion moved back from v{before} to v{after}")


@app.command()
@user_errors
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files (28x28 grayscale PNG).")],
    params: ParamsOpt = Path("params.yaml"),
    tracking_uri: TrackingOpt = None,
) -> None:
    """Classify images with the champion model; prints each file's class name."""
    from fmnist.stages import run_predict

    for row in run_predict(_params(params), images, _tracking_uri(tracking_uri)):
        note = f"  ({row['note']})" if row["note"] else ""
        typer.echo(f"{row['image']}: {row['label']} (p={row['probability']:.3f}){note}")


@app.command()
@user_errors
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5001,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    params: ParamsOpt = Path("params.yaml"),
    tracking_uri: TrackingOpt = None,
) -> None:
    """Serve the champion (MLflow's scoring server): POST raw 0-255 pixels to /invocations."""
    import sys

    from fmnist.experiments import stage_env  # this venv's bin/ first: MLflow runs `uvicorn`
    from fmnist.registry import CHAMPION, champion_version
    from fmnist.stages import champion_uri

    p = _params(params)
    uri = _tracking_uri(tracking_uri)
    version = champion_version(uri, p.register_.model_name)  # a clear error if there is none
    typer.echo(f"serving {p.register_.model_name} v{version} (@{CHAMPION}) on http://{host}:{port}")
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", champion_uri(p)]
    command += ["--env-manager", "local", "--host", host, "--port", str(port)]
    os.execve(sys.executable, command, stage_env({"MLFLOW_TRACKING_URI": uri}))


@app.command()
@user_errors
def sweep(
    optimizer: Annotated[
        list[str] | None,
        typer.Option(help="An optimizer of the grid (repeat it); default the tutorial's four."),
    ] = None,
    activation: Annotated[
        list[str] | None,
        typer.Option(help="A hidden activation of the grid (repeat it); default sigmoid, relu."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs for every training.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size for every training.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="For every training.")] = None,
    jobs: Annotated[int, typer.Option(help="Trainings at a time.", min=1)] = 1,
    name: Annotated[
        str | None, typer.Option(help="The sweep's name (default sweep-<time>).")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    tracking_uri: TrackingOpt = None,
) -> None:
    """Train the grid (optimizers x activations) as DVC experiments and nested MLflow runs,
    then register the best and apply the promotion rule. No Prefect needed."""
    import time

    from fmnist.overrides import RunOverrides
    from fmnist.stages import plan_sweep, run_sweep
    from fmnist.sweep import ACTIVATIONS, OPTIMIZERS

    root = Path.cwd()
    sweep_name = name or time.strftime("sweep-%Y%m%d-%H%M%S")
    base = RunOverrides(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
    plan = plan_sweep(root, sweep_name, optimizer or OPTIMIZERS, activation or ACTIVATIONS, base)
    typer.echo(f"{sweep_name}: {len(plan)} trainings, {jobs} at a time")
    result = run_sweep(
        _params(params), root, sweep_name, plan, jobs, _tracking_uri(tracking_uri), typer.echo
    )
    typer.echo(f"\n{'training':18} {'test_accuracy':>13} {'test_loss':>9} {'fit s':>6}  status")
    for row in result.rows:
        acc, loss, fit = (row[k] for k in ("test_accuracy", "test_loss", "fit_seconds"))
        typer.echo(
            f"{row['training']:18} {acc if acc is not None else '-':>13} "
            f"{loss if loss is not None else '-':>9} {fit if fit is not None else '-':>6}  "
            f"{row['status']}"
        )
    reg = result.registered
    aliases = " ".join(f"@{a}" for a in reg["aliases"])
    typer.echo(f"registered {reg['name']} v{reg['version']} {aliases}: {reg['promotion']}")


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
    mlflow_backend_uri: Annotated[
        str | None,
        typer.Option(
            envvar="FMNIST_MLFLOW_BACKEND_URI",
            help="Production: the MLflow server's database (postgresql://...); runs then "
            "track through the server.",
        ),
    ] = None,
    mlflow_artifacts: Annotated[
        str | None,
        typer.Option(envvar="FMNIST_MLFLOW_ARTIFACTS", help="The MLflow server's artifact root."),
    ] = None,
    prefect_database_url: Annotated[
        str | None,
        typer.Option(
            envvar="FMNIST_PREFECT_DATABASE_URL",
            help="Production: Prefect's database (postgresql+asyncpg://...).",
        ),
    ] = None,
) -> None:
    """Start everything, wait until each answers its health check, print the URLs."""
    from fmnist.stack import StackConfig, up

    root = Path.cwd().resolve()
    cfg = StackConfig(
        root,
        (root / state).resolve(),
        prefect_port,
        mlflow_port,
        tracking_uri=tracking_uri,
        mlflow_backend_uri=mlflow_backend_uri,
        mlflow_artifacts=mlflow_artifacts,
        prefect_database_url=prefect_database_url,
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


SHORT_LIVED_GC = (50_000, 20, 100)  # gc thresholds for a command (Python's: 700, 10, 10)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banner quiet
    # A command lives seconds to minutes and imports ~1M long-lived objects (TensorFlow,
    # Keras, MLflow): with Python's thresholds the collector rescans them all 8 times in a
    # train stage (1.1 s here). Young cycles are still collected; full passes become rare.
    gc.set_threshold(*SHORT_LIVED_GC)
    try:
        app(prog_name="fmnist")
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    if code is not None and not isinstance(code, int):  # SystemExit("why"): say why, as Python does
        print(code, file=sys.stderr)
        code = 1
    exit_now(code or 0)


def exit_now(code: int) -> NoReturn:
    """End the process without tearing the interpreter down.

    A finished command has closed its files and ended its MLflow run; what is left is
    unloading TensorFlow, Keras and MLflow module by module, which costs 1-1.5 s per process
    here (about 4 s of a `dvc repro`). Threads are stopped and waited for and exit handlers
    run, as in a normal exit; then stdio is flushed and the process ends with code.
    """
    import atexit
    import threading

    # The interpreter's own first steps at exit, in its order: threading's exit hooks (they
    # stop e.g. ThreadPoolExecutor workers), joining non-daemon threads, then atexit.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
