"""The `fmnist` command: one subcommand per DVC stage, each a thin call into stages.py."""

from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

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


def user_errors(command: F) -> F:
    """Users' mistakes and the world's faults end as one line on stderr and a specific exit
    code (fmnist.failures), not a traceback; Ctrl-C and SIGTERM as `interrupted` and 130/143."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from fmnist.failures import failure_line, interrupted_line, raise_interrupted

        # A terminated stage (dvc, Prefect cancelling) unwinds like Ctrl-C: runs end KILLED,
        # temporary files are removed.
        signal.signal(signal.SIGTERM, raise_interrupted)
        name = command.__name__.replace("_", " ")  # stack_up -> `stack up`, as typed
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt as exc:
            line, code = interrupted_line(exc)
            typer.echo(f"fmnist {name}: {line}", err=True)
            raise typer.Exit(code) from None
        except Exception as exc:
            failure = failure_line(exc, _tracking_uri_in_use())
            if failure is None:
                raise  # a bug: the traceback is for us
            typer.echo(f"fmnist {name}: error: {failure[0]}", err=True)
            raise typer.Exit(failure[1]) from None

    return wrapper  # type: ignore[return-value]


def _tracking_uri_in_use() -> str | None:
    """The store this command used (for naming it in an error), if it opened one."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        return str(mlflow.get_tracking_uri())
    return os.environ.get("MLFLOW_TRACKING_URI")


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
    force: Annotated[
        bool,
        typer.Option(help="Promote below register.min_accuracy, or if its run did not finish."),
    ] = False,
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
    images: Annotated[
        list[Path],
        typer.Argument(help="Image files: PNG of any bit depth and colour (28x28 grayscale best)."),
    ],
    params: ParamsOpt = Path("params.yaml"),
    tracking_uri: TrackingOpt = None,
) -> None:
    """Classify images with the champion model; prints each file's class name."""
    from fmnist.scoring import run_predict

    for row in run_predict(_params(params), images, _tracking_uri(tracking_uri)):
        note = f"  ({row['note']})" if row["note"] else ""
        typer.echo(f"{row['image']}: {row['label']} (p={row['probability']:.3f}){note}")


@app.command()
@user_errors
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5001,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    max_request_mb: Annotated[
        float,
        typer.Option(min=0.001, help="Largest request body in MB (10^6 bytes); larger get 413."),
    ] = 50.0,
    params: ParamsOpt = Path("params.yaml"),
    tracking_uri: TrackingOpt = None,
) -> None:
    """Serve the champion (fmnist's scoring server): POST raw 0-255 pixels to /invocations."""
    from fmnist.scoring import bind, load_champion, serve

    p = _params(params)
    uri = _tracking_uri(tracking_uri)
    sock = bind(host, port)  # a busy port is said before the model loads
    served = load_champion(uri, p.register_.model_name)  # a clear error if there is none
    serve(sock, served, int(max_request_mb * 1e6), typer.echo)


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
    then register the best by validation accuracy and apply the promotion rule. No Prefect
    needed."""
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
    widths = {
        "val_accuracy": 12,
        "val_loss": 8,
        "test_accuracy": 13,
        "test_loss": 9,
        "fit_seconds": 6,
    }
    heads = " ".join(f"{'fit s' if k == 'fit_seconds' else k:>{w}}" for k, w in widths.items())
    typer.echo(f"\n{'training':18} {heads}  status")  # best by val_accuracy first
    for row in result.rows:
        values = " ".join(f"{'-' if row[k] is None else row[k]:>{w}}" for k, w in widths.items())
        typer.echo(f"{row['training']:18} {values}  {row['status']}")
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
    from fmnist.stack import StackConfig, redact, up

    if any(redact(arg) != arg for arg in sys.argv):
        typer.echo(
            "fmnist stack up: warning: a password on this command line is visible to every "
            "user (ps); set FMNIST_MLFLOW_BACKEND_URI / FMNIST_PREFECT_DATABASE_URL instead",
            err=True,
        )
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
    """Stop the processes of the stack: those `stack up` recorded and their children."""
    from fmnist.stack import STATE_FILE, down

    stopped = down(Path.cwd().resolve(), state.resolve())
    if stopped.damaged:
        record = state / STATE_FILE
        why = f"{record} was damaged ({stopped.damaged})"
        typer.echo(f"{why}; stopped what carries the stack's marker, removed the record", err=True)
    names = [*stopped.services, *(f"unrecorded {p}" for p in stopped.unrecorded)]
    typer.echo(f"stopped: {', '.join(names)}" if names else "nothing was running")


@stack_app.command("status")
@user_errors
def stack_status(state: StateOpt = Path(".stack")) -> None:
    """What `stack up` started: pid, healthy / running / stopped, URL, orphans."""
    from fmnist.stack import status

    report = status(state.resolve())
    if not report.services and not report.unrecorded:
        typer.echo("down (nothing recorded)")
    for row in report.services:
        line = f"{row.service.name:15} pid {row.service.pid:<7} {row.state:8} {row.service.url}"
        if row.orphans:
            line += f"  its process died; orphans still run: {', '.join(row.orphans)}"
        typer.echo(line)
    if report.unrecorded:
        typer.echo(f"unrecorded processes of this stack: {', '.join(report.unrecorded)}")
    if report.unrecorded or any(row.orphans for row in report.services):
        typer.echo("`make down` stops them all")


SHORT_LIVED_GC = (50_000, 20, 100)  # gc thresholds for a command (Python's: 700, 10, 10)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banner quiet
    # A command lives seconds to minutes and imports ~1M long-lived objects (TensorFlow,
    # Keras, MLflow): with Python's thresholds the collector rescans them all 8 times in a
    # train stage (1.1 s here). Young cycles are still collected; full passes become rare.
    gc.set_threshold(*SHORT_LIVED_GC)
    # MLflow's sqlite store logs every database error with its traceback before raising it;
    # fmnist reports the same failure in one line (fmnist.failures).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    from fmnist.store import bound_http_waits

    try:
        bound_http_waits()  # a tracking server that dies mid-command costs ~1 min, not 4+
        app(prog_name="fmnist")
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    # The command is over (its result said, its run ended): a Ctrl-C or SIGTERM now would
    # only tear the exit itself apart (a traceback from a library's exit hook, or worse).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if code is not None and not isinstance(code, int):  # SystemExit("why"): say why, as Python does
        print(code, file=sys.stderr)
        code = 1
    if code in INTERRUPTED_CODES:
        # Interrupted, perhaps inside a library's import or start-up: its exit hooks and
        # threads may be half made (seen: SIGABRT from them). The run was ended KILLED and
        # the temporary files removed on the way out; nothing else is left to do.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    exit_now(code or 0)


INTERRUPTED_CODES = (128 + signal.SIGINT, 128 + signal.SIGTERM)  # 130, 143


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
