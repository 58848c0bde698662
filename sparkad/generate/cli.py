"""`sparkad generate`: the click command object (registered on the sparkad group by sparkad/cli.py)."""
from __future__ import annotations

import click

from sparkad.core.commands import dask_scheduler_option, spark_master_option
from sparkad.core.errors import one_line_errors
from sparkad.generate.config import GeneratorConfigError, list_presets


@click.command("generate")
@click.option("--preset", default="default", show_default=True,
              help="Preset name in conf/generate/ (or a path to a preset YAML).")
@click.option("--events", "events", type=int, default=None,
              help="Total number of events over all samples (default: the preset's).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output directory for the ROOT files and fileset.yaml.")
@click.option("--seed", type=int, default=None, help="Random seed (default: the preset's).")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Parallel workers: local processes, Spark's local[N] or local Dask worker processes.")
@click.option("--executor", type=click.Choice(["local", "spark", "dask"]), default=None,
              help="Where the per-file tasks run (default: local; spark with --master, dask with --scheduler).")
@spark_master_option("local[WORKERS]")
@dask_scheduler_option
@click.option("--exact-layout", is_flag=True, default=False,
              help="Write exactly the real CMS 2012 layout (no PF summaries, Truth_*, genWeight, Runs).")
@click.option("--pf-candidates", is_flag=True, default=False,
              help="Also write a PFNano-style PFCands collection (large files).")
@click.option("--engine", type=click.Choice(["parametric", "pythia", "pythia_dijet"]), default=None,
              help="Event engine: parametric (fast), pythia (Pythia 8 + FastJet) or pythia_dijet (large-R jets "
                   "and constituents, PFNano layout; default: the preset's).")
@click.option("--list-presets", "list_presets_", is_flag=True, default=False, help="List the available presets and exit.")
@click.option("--quiet", is_flag=True, default=False, help="No progress bar.")
@one_line_errors
def generate(preset, events, out_dir, seed, workers, executor, master, scheduler, exact_layout, pf_candidates, engine,
             list_presets_, quiet):
    """Generate labelled CMS-2012-layout ROOT files and a fileset YAML for `sparkad extract`.

    One task per output file, on local processes, Spark or Dask: the workers write the ROOT files into
    --out (on a cluster, a folder every worker sees), the driver writes fileset.yaml last."""
    if list_presets_:
        presets = list_presets()
        if not presets:
            raise click.ClickException("no presets found in conf/generate (set SPARKAD_CONF?)")
        width = max(len(k) for k in presets)
        for name, desc in presets.items():
            click.echo(f"{name:<{width}}  {desc}")
        return
    if out_dir is None:
        raise click.UsageError("--out DIR is required")
    if events is not None and events < 1:
        raise click.UsageError(f"--events must be >= 1, got {events}")
    if workers < 1:
        raise click.UsageError(f"--workers must be >= 1, got {workers}")
    if seed is not None and seed < 0:
        raise click.UsageError(f"--seed must be >= 0, got {seed}")
    if master and scheduler:
        raise click.UsageError("--master (Spark) and --scheduler (Dask) exclude each other")
    executor = executor or ("spark" if master else "dask" if scheduler else "local")
    if master and executor != "spark" or scheduler and executor != "dask":
        raise click.UsageError(f"--{'master' if master else 'scheduler'} does not go with --executor {executor}")
    from sparkad.generate.api import generate as run_generate

    overrides = {}
    if exact_layout:
        overrides["exact_layout"] = True
    if pf_candidates:
        overrides["pf_candidates"] = True
    if engine:
        overrides["engine"] = engine
    try:
        path = run_generate(preset, n_events=events, out_dir=out_dir, seed=seed, workers=workers,
                            progress=not quiet, executor=executor, master=master, scheduler=scheduler,
                            **overrides)
    except GeneratorConfigError as e:
        raise click.UsageError(str(e)) from None
    except (OSError, ValueError) as e:
        raise click.ClickException(f"generation failed: {e}") from None
    click.echo(f"wrote {path}")

