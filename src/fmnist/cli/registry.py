"""The registry's commands: list the versions, promote one by hand, roll `champion` back."""

from __future__ import annotations

from typing import Annotated

import typer

from fmnist.cli.app import PARAMS, ParamsOpt, TrackingOpt, app, load_params, tracking_uri


@app.command()
def models(params: ParamsOpt = PARAMS, tracking_uri_: TrackingOpt = None) -> None:
    """The registered model's versions: aliases, test accuracy, optimizer, created."""
    from fmnist.registry.versions import list_versions

    name = load_params(params).register_.model_name
    rows = list_versions(tracking_uri(tracking_uri_), name)
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
def promote(
    version: Annotated[int, typer.Option(help="The version to make `champion`.")],
    force: Annotated[
        bool,
        typer.Option(help="Promote below register.min_accuracy, or if its run did not finish."),
    ] = False,
    params: ParamsOpt = PARAMS,
    tracking_uri_: TrackingOpt = None,
) -> None:
    """Make a version `champion` by hand (it must reach register.min_accuracy unless --force)."""
    from fmnist.registry.promotion import by_hand_lines
    from fmnist.registry.register import promote as promote_version

    p = load_params(params)
    decision = promote_version(p, version, force, tracking_uri(tracking_uri_))
    for line in by_hand_lines(p.register_.model_name, version, decision):
        typer.echo(line)


@app.command()
def rollback(params: ParamsOpt = PARAMS, tracking_uri_: TrackingOpt = None) -> None:
    """Give `champion` back to the version that held it before."""
    from fmnist.registry.champion import rollback as rollback_champion

    name = load_params(params).register_.model_name
    before, after = rollback_champion(tracking_uri(tracking_uri_), name)
    typer.echo(f"{name}: @champion moved back from v{before} to v{after}")
