"""The production profile: MLflow and Prefect servers on a real PostgreSQL, runs pointed at
them by environment variables only; the sweep on Dask; four pipelines at once.

PostgreSQL (Debian's `postgresql`, installed by `make test`) is started by the test itself:
`initdb` in a temporary folder, `pg_ctl` on a free loopback port, stopped at the end.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fmnist import stack
from tests.integration.conftest import (
    Runner,
    copy_repo,
    data_mirror,
    make_runner,
    runner_env,
    running_stack,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER = "fmnist"
PASSWORD = "not-shown-7f3a"  # in the URLs given to the stack; trust auth never asks for it
RATES = ["0.001", "0.002", "0.003", "0.004"]  # one per concurrent pipeline
SWEEP = "fashion-mnist-sweep/default"
TINY_GRID = ('optimizers=["adam", "sgd"]', 'activations=["relu"]', "epochs=1")  # 2 trainings


def pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    if not found:
        pytest.fail(f"{name} not found: `make test` installs Debian's postgresql package")
    return found


def as_db_owner(owner: str | None, *cmd: str) -> list[str]:
    """PostgreSQL refuses to run as root: then it runs as the package's `postgres` user."""
    return ["runuser", "-u", owner, "--", *cmd] if owner else list(cmd)


@dataclass
class Postgres:
    port: int

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{USER}@127.0.0.1:{self.port}/{database}"

    def query(self, database: str, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database)) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr or done.stdout}"


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    # Not under pytest's tmp folders: those are private to root, and a root PostgreSQL runs
    # as the `postgres` user, who must reach its data folder.
    folder = Path(tempfile.mkdtemp(prefix="fmnist-pg-"))
    owner = "postgres" if os.geteuid() == 0 else None
    if owner:
        shutil.chown(folder, owner, owner)
    data, port = folder / "data", stack.free_port()
    ctl = [pg_bin("pg_ctl"), "-D", str(data), "-w"]
    try:
        _run(as_db_owner(owner, pg_bin("initdb"), "-D", str(data), "-U", USER, "-A", "trust",
                         "-E", "UTF8", "--no-locale"))  # fmt: skip
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
        _run(as_db_owner(owner, *ctl, "-o", options, "-l", str(folder / "log"), "start"))
        for database in ("mlflow", "prefect", "optuna"):
            _run([pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, database])
        yield Postgres(port)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(as_db_owner(owner, *ctl, "-m", "fast", "stop"), timeout=120, check=False)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Production:
    repo: Path
    run: Runner
    env: dict[str, str]
    mlflow_uri: str
    artifacts: Path
    pg: Postgres


@pytest.fixture(scope="module")
def production(
    tmp_path_factory: pytest.TempPathFactory, postgres: Postgres
) -> Iterator[Production]:
    root = tmp_path_factory.mktemp("production")
    repo = copy_repo(root / "repo")
    artifacts = root / "artifacts"
    prefect_port, mlflow_port = stack.free_port(), stack.free_port()
    cfg = stack.StackConfig(
        root=repo,
        state_dir=repo / ".stack",
        prefect_port=prefect_port,
        mlflow_port=mlflow_port,
        mlflow_backend_uri=_with_password(postgres.url("mlflow")),
        mlflow_artifacts=str(artifacts),
        prefect_database_url=_with_password(postgres.url("prefect", "postgresql+asyncpg")),
        env={
            "FMNIST_DATA_MIRROR": data_mirror(),  # the worker's data source (no internet)
            # the search's study on the same PostgreSQL (by environment, as a user sets it)
            "FMNIST_SEARCH_STORAGE": _with_password(postgres.url("optuna")),
        },
    )
    printed: list[str] = []
    with running_stack(cfg, echo=printed.append):
        _assert_password_hidden(cfg, printed)
        mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
        # What a user sets, and nothing else: the two servers' URLs.
        env = runner_env(
            repo,
            {
                "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
                "MLFLOW_TRACKING_URI": mlflow_uri,
            },
        )
        yield Production(repo, make_runner(repo, env), env, mlflow_uri, artifacts, postgres)


def _with_password(url: str) -> str:
    return url.replace(f"//{USER}@", f"//{USER}:{PASSWORD}@")


def _assert_password_hidden(cfg: stack.StackConfig, printed: list[str]) -> None:
    """Not on any command line (`ps`), in what `up` printed, or in the record."""
    import psutil

    assert "postgresql://fmnist:***@" in "\n".join(printed)
    assert PASSWORD not in "\n".join(printed)
    for proc in psutil.process_iter(["cmdline"]):
        assert PASSWORD not in " ".join(proc.info["cmdline"] or []), proc.info["cmdline"]
    assert PASSWORD not in (cfg.state_dir / stack.STATE_FILE).read_text()


def deployment_run(prod: Production, deployment: str, *params: str, ends: str = "Completed") -> str:
    args = ["prefect", "deployment", "run", deployment, "--watch", "--watch-timeout", "900"]
    for param in params:
        args += ["-p", param]
    result = prod.run(*args, timeout=1000, check=ends == "Completed")
    assert f"Flow run finished successfully in '{ends}'" in result.stdout or (
        ends != "Completed" and f"'{ends}'" in result.stdout
    ), result.stdout + result.stderr
    return result.stdout


def client(prod: Production):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    return MlflowClient(prod.mlflow_uri)


def test_pipeline_runs_on_postgres_through_the_servers(production: Production) -> None:
    deployment_run(production, "fashion-mnist-pipeline/default", "epochs=1")
    versions = client(production).search_model_versions("name = 'fashion-mnist'")
    assert len(versions) == 1
    run = client(production).get_run(versions[0].run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client(production).get_metric_history(run.info.run_id, "loss")] == [1]
    # Everything landed in PostgreSQL and the separate artifact root, nothing in the repo.
    stored = "select count(*) from model_versions where name = 'fashion-mnist'"
    assert production.pg.query("mlflow", stored)[0][0] == 1  # (the promotion lock's apart)
    assert production.pg.query("prefect", "select count(*) from flow_run")[0][0] >= 1
    assert list(production.artifacts.rglob("model_summary.txt"))
    assert not (production.repo / "mlflow.db").exists()


def test_sweep_on_dask_registers_the_best_child(production: Production) -> None:
    before = {v.version for v in client(production).search_model_versions("name = 'fashion-mnist'")}
    output = deployment_run(production, SWEEP, *TINY_GRID, "dask_workers=2")
    mlflow = client(production)
    experiment = mlflow.get_experiment_by_name("fashion-mnist")
    tagged = mlflow.search_runs([experiment.experiment_id], "tags.`fmnist.tuning.sweep` != ''")
    parents = [r for r in tagged if "mlflow.parentRunId" not in r.data.tags]  # (trials: tagged)
    assert len(parents) == 1, output
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = mlflow.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    trials = [c for c in children if "fmnist.tuning.sweep.trial" in c.data.tags]
    assert sorted(c.info.run_name for c in trials) == ["adam-relu", "sgd-relu"]
    assert {c.info.status for c in children} == {"FINISHED"} and len(children) == 3
    # chosen on validation, not on test (no trial read the test set)
    best = max(trials, key=lambda c: c.data.metrics["val_accuracy"])
    assert (
        parent.data.tags["fmnist.tuning.sweep.best_trial"]
        == (best.data.tags["fmnist.tuning.sweep.trial"])
    )
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(
        best.data.metrics["val_accuracy"]
    )
    # the comparison: a Prefect table artifact and the parent run's artifact
    artifact = production.run("prefect", "artifact", "inspect", "fashion-mnist-sweep").stdout
    assert "adam-relu" in artifact and "sgd-relu" in artifact
    folder = production.repo.parent / "downloaded"
    folder.mkdir(exist_ok=True)
    local = mlflow.download_artifacts(parent.info.run_id, "sweep/summary.json", str(folder))
    rows = json.loads(Path(local).read_text())
    assert [r["state"] for r in rows["table"]] == ["complete", "complete"]
    # the best, trained again as one DVC experiment, and only it became a new version, with
    # the promotion rule's decision on its test accuracy
    (training,) = [c for c in children if c not in trials]
    assert training.data.params["train.optimizer"] == best.info.run_name.split("-")[0]
    assert parent.data.metrics["best_test_accuracy"] == pytest.approx(
        training.data.metrics["test_accuracy"]
    )
    new = [
        v for v in mlflow.search_model_versions("name = 'fashion-mnist'") if v.version not in before
    ]
    assert [v.run_id for v in new] == [training.info.run_id]
    assert (
        "fmnist.promotion.reason" in mlflow.get_model_version("fashion-mnist", new[0].version).tags
    )
    names = production.run("dvc", "exp", "list", "--name-only").stdout.split()
    assert sum(n.endswith(f"-{best.info.run_name}") for n in names) == 1


def test_four_pipelines_at_once_lose_nothing(production: Production) -> None:
    mlflow = client(production)
    before = {v.version for v in mlflow.search_model_versions("name = 'fashion-mnist'")}
    procs = [
        subprocess.Popen(
            [
                "dvc",
                "--wait-for-lock",
                "exp",
                "run",
                "--temp",
                "--name",
                f"together-{i}",
                "-S",
                "train.epochs=1",
                "-S",
                f"train.learning_rate={rate}",
            ],
            cwd=production.repo,
            env=production.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i, rate in enumerate(RATES)
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-3000:]
    new = [
        v for v in mlflow.search_model_versions("name = 'fashion-mnist'") if v.version not in before
    ]
    assert len(new) == 4
    rates = set()
    for version in new:
        run = mlflow.get_run(version.run_id)
        assert run.info.status == "FINISHED"
        rates.add(run.data.params["train.learning_rate"])
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert [m.step for m in mlflow.get_metric_history(run.info.run_id, key)] == [1]
        assert {"test_accuracy", "test_loss", "fit_seconds"} <= set(run.data.metrics)
    assert rates == set(RATES)
    champion = mlflow.get_model_version_by_alias("fashion-mnist", "champion")
    assert champion.version is not None


def test_sweep_where_every_training_diverges_registers_nothing(production: Production) -> None:
    mlflow = client(production)
    before = len(mlflow.search_model_versions("name = 'fashion-mnist'"))
    output = deployment_run(production, SWEEP, *TINY_GRID, "learning_rate=1e30", ends="Failed")
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert run_id, output
    state = production.run("prefect", "flow-run", "inspect", run_id.group(1)).stdout
    assert "every trial of this run failed" in " ".join(state.split()), state
    experiment = mlflow.get_experiment_by_name("fashion-mnist").experiment_id
    parent = next(
        r
        for r in mlflow.search_runs(
            [experiment],
            "tags.`fmnist.tuning.sweep` != ''",
            order_by=["attributes.start_time DESC"],
        )
        if "mlflow.parentRunId" not in r.data.tags
    )
    assert parent.info.status == "FAILED"
    children = mlflow.search_runs(
        [experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert {c.info.status for c in children} == {"FAILED"} and len(children) == 2
    artifact = production.run("prefect", "artifact", "inspect", "fashion-mnist-sweep").stdout
    artifact = " ".join(artifact.split())  # the CLI wraps long lines
    assert artifact.count("training diverged") == 2, artifact
    assert len(mlflow.search_model_versions("name = 'fashion-mnist'")) == before


SEARCH_SPACE = """
    layers: [1, 1]
    units: [16, 32]
    activations: [relu]
    dropout: [0.0, 0.0]
    batch_norm: [false]
    optimizers: [adam]
    learning_rate: [0.001, 0.01]
    schedules: [constant]
    batch_sizes: [256]
    epochs: [1, 2]
"""


def test_search_keeps_its_study_on_postgres(production: Production) -> None:
    """The search deployment with its study in the production PostgreSQL: trials nested under
    the search's run on the tracking server, the best registered, the password never shown."""
    params = production.repo / "params.yaml"
    before = params.read_text(encoding="utf-8")
    head, _, _ = before.partition("  space:")
    params.write_text(f"{head}  space:{SEARCH_SPACE}", encoding="utf-8")
    try:
        output = deployment_run(production, "fashion-mnist-search/default", "trials=3")
    finally:
        params.write_text(before, encoding="utf-8")
    assert PASSWORD not in output
    # the sweeps before it keep their studies in the same database
    ((count,),) = production.pg.query(
        "optuna",
        "select count(*) from trials join studies using (study_id) "
        "where study_name = 'fashion-mnist-search'",
    )
    assert count == 3
    mlflow = client(production)
    experiment = mlflow.get_experiment_by_name("fashion-mnist")
    found = mlflow.search_runs([experiment.experiment_id], "tags.`fmnist.tuning.search` != ''")
    (parent,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    trials = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 3 and parent.info.status == "FINISHED"
    version = parent.data.tags["fmnist.registered.version"]
    # the best trained again on more of the data: params.yaml's search.refit_val_size
    (training,) = [r for r in mlflow.search_runs([experiment.experiment_id],
                   f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
                   if "fmnist.tuning.search.trial" not in r.data.tags]  # fmt: skip
    assert training.data.params["prepare.val_size"] == "0.05"
    assert mlflow.get_model_version("fashion-mnist", version).run_id != parent.info.run_id
    assert not (production.repo / "optuna.db").exists()  # the study is not in the repo
