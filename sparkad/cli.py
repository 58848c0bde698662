"""The ``sparkad`` command line. Each sub-command is a thin layer over a library function;
errors a user can fix are printed as one line (``error: FILE: problem``) with exit code 1."""
from __future__ import annotations

from pathlib import Path

import click

from sparkad.core.commands import (
    dask_scheduler_option,
    option_group,
    spark_master_option,
    split_list,
)
from sparkad.core.errors import one_line_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sparkad")
def main():
    """sparkad: model-independent anomaly detection on CMS collision data."""
    from sparkad.core.runtime import setup_process
    setup_process()


@main.command()
@click.argument("files", nargs=-1, type=str)
@click.option("--fileset", type=click.Path(dir_okay=False), help="Fileset YAML (dataset → files, xsec, n_gen, is_data, label).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--analysis", type=click.Choice(["single_lepton", "dijet"]),
              help="single_lepton (default) or dijet: two large-R jets, their substructure and constituents (seeds/004).")
@click.option("--features", "feature_set", help="Feature set (vae21, alad24, cms2012; dijet) or comma-separated feature names.")
@click.option("--selection", help="Selection preset of conf/selections.yaml or a YAML file.")
@click.option("--missing", "on_missing", type=click.Choice(["refuse", "nan"]), help="Features the input cannot provide: refuse (default) or fill NaN.")
@click.option("--executor", type=click.Choice(["iterative", "futures", "dask"]), help="coffea executor.")
@click.option("--workers", type=int, help="Workers for the futures / local Dask executors.")
@dask_scheduler_option
@click.option("--chunksize", type=int, help="Events per chunk.")
@click.option("--skip-bad-files", is_flag=True, help="Skip unreadable / empty / incomplete files and list them in _report.json.")
@click.option("--format", "fmt", type=click.Choice(["cms2012", "nanoaod", "pfnano", "delphes"]), help="Input format (default: detected per file).")
@click.option("--dataset", default=None, help="Dataset name for FILES (default: stem of the first file).")
@click.option("--is-data", is_flag=True, help="FILES are collision data (weight 1, label 'data').")
@click.option("--label", default=None, help="Label for FILES.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@one_line_errors
def extract(files, fileset, out, analysis, feature_set, selection, on_missing, executor, workers, scheduler, chunksize,
            skip_bad_files, fmt, dataset, is_data, label, quiet):
    """Stream ROOT FILES (or a --fileset) through the coffea HLF processor into OUT/<dataset>/*.parquet."""
    from sparkad.extract.fileset import DatasetSpec, Fileset, load_fileset
    from sparkad.extract.remote import expand_url, is_url
    from sparkad.extract.run import ExtractOptions, run_extraction

    if bool(files) == bool(fileset):
        raise click.UsageError("give either ROOT FILES or --fileset YAML")
    if fileset:
        fs = load_fileset(fileset)
        if fmt:
            for ds in fs.datasets.values():
                ds.format = fmt
    else:
        paths = [u for f in files for u in (expand_url(f, "FILES") if is_url(f) else [str(Path(f).resolve())])]
        name = dataset or Path(paths[0]).stem
        fs = Fileset({name: DatasetSpec(name=name, files=paths, is_data=is_data,
                                        label=label or ("data" if is_data else name), format=fmt)})
    opts = ExtractOptions.from_conf(out, analysis=analysis, feature_set=feature_set, selection=selection,
                                    on_missing=on_missing,
                                    executor=executor, workers=workers, scheduler=scheduler, chunksize=chunksize,
                                    skip_bad_files=skip_bad_files, progress=not quiet)
    if scheduler and opts.executor != "dask":
        opts.executor = "dask"
    report = run_extraction(fs, opts, log=lambda m: click.echo(m, err=True))
    t = report["totals"]
    click.echo(f"extracted {t['written']} of {t['events_in']} events ({t['cut']} cut; "
               f"{len(report['files_skipped'])} file(s) skipped holding {t['events_in_skipped_files']} events) "
               f"with {report['feature_set']} / {report['selection']['name']} into {out} in {report['elapsed_s']:.1f} s")
    for name, d in report["datasets"].items():
        click.echo(f"  {name:<20} {d['events_in']:>10} in {d['written']:>10} written  ({d['weighting']['normalisation']})")


#: the options `sparkad train` and jobs/train.py share
train_options = option_group(
    click.option("--model", "kind", type=click.Choice(["ae", "alad", "vae", "jet_vae", "cwola", "cathode"]), required=True,
                 help="Model to train (jet_vae: the per-jet image VAE of the dijet search, conf/jet_vae.yaml; cwola: "
                      "CWoLa-hunting classifiers of a signal region against its sidebands, conf/cwola.yaml; cathode: "
                      "a flow on the sidebands, its SR samples against the SR data, conf/cathode.yaml)."),
    click.option("--hlf", "hlf_dir", required=True, type=click.Path(file_okay=False), help="HLF folder written by `sparkad extract`."),
    click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Model directory to write."),
    click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML overriding conf/train.yaml."),
    click.option("--epochs", type=click.IntRange(min=1), help="Epochs."),
    click.option("--batch-size", type=click.IntRange(min=1), help="Batch size per worker."),
    click.option("--train-on-data", is_flag=True, help="Train on the data datasets (seeds/000 sec. 4)."),
    click.option("--signal-region", callback=lambda ctx, p, v: mjj_window(v), metavar="LO:HI",
                 help="cwola, cathode: the mjj signal region in GeV (default 3300:3700)."),
    click.option("--scan", metavar="LO:HI:WIDTH[:STEP]",
                 help="cwola: slide the signal region over mjj, one model per window (e.g. 2900:4300:400:200)."),
)


def mjj_window(text):
    """'3300:3700' -> (3300.0, 3700.0); None passes."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in str(text).split(":"))
    except ValueError:
        raise click.BadParameter(f"expected LO:HI in GeV (e.g. 3300:3700), got {text!r}") from None
    if not 0 < lo < hi:
        raise click.BadParameter(f"expected 0 < LO < HI, got {text!r}")
    return lo, hi


@main.command()
@train_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@one_line_errors
def train(kind, hlf_dir, out, config_file, epochs, batch_size, train_on_data, signal_region, scan, quiet):
    """Train an anomaly detector on the SM cocktail of an HLF folder into a model directory."""
    from sparkad.train.api import train_from_config

    if (signal_region is not None and kind not in ("cwola", "cathode")) or (scan and kind != "cwola"):
        raise click.UsageError("--signal-region is a cwola / cathode option, --scan a cwola one")
    if scan:
        from sparkad.train.cwola import scan_windows, train_cwola_scan

        if signal_region is not None:
            raise click.UsageError("give --signal-region or --scan, not both")
        try:
            parts = [float(v) for v in scan.split(":")]
            if len(parts) not in (3, 4):
                raise ValueError
        except ValueError:
            raise click.BadParameter(f"expected LO:HI:WIDTH[:STEP] in GeV, got {scan!r}", param_hint="--scan") from None
        doc = train_cwola_scan(hlf_dir, out, scan_windows(*parts), config_file=config_file, epochs=epochs,
                               batch_size=batch_size, progress=not quiet, log=lambda m: click.echo(m, err=True))
        for r in doc["windows"]:
            lo, hi = r["signal_region"]
            click.echo(f"  {lo:g}-{hi:g} GeV: " + (f"skipped ({r['skipped']})" if "skipped" in r else
                       f"{r['n_sr']} SR / {r['n_sb']} SB events, SR vs SB AUC {r['sr_vs_sb_auc']:.4f}"))
        click.echo(f"scan of {len(doc['windows'])} windows → {out}")
        return
    doc = train_from_config(kind, hlf_dir, out, config_file=config_file, epochs=epochs, batch_size=batch_size,
                            train_on_data=train_on_data, signal_region=signal_region, progress=not quiet,
                            log=lambda m: click.echo(m, err=True))
    if kind in ("cwola", "cathode"):
        p, folds = doc["provenance"], doc["history"]["folds"]
        click.echo(f"trained {kind} on {p['n_sr']} signal-region and {p['n_sb']} sideband events of "
                   f"{', '.join(p['datasets'])} ({len(folds)} folds, {sum(f['epochs'] for f in folds)} epochs) → {out}")
        if kind == "cathode":
            click.echo(f"  SR data vs the flow's samples AUC {doc['data_vs_samples_auc']:.4f} out of fold "
                       f"({p['n_samples']} samples; 0.5: no difference)")
        th = doc["thresholds"][kind]
        click.echo(f"  threshold {kind:<9} " + ", ".join(f"{k}: {t['value']:.5g}" if t["value"] is not None else f"{k}: n/a"
                                                      for k, t in th.items()))
        return
    last = doc["history"]["last"] or {}
    click.echo(f"trained {kind} on {doc['provenance']['n_train']} events ({doc['history']['epochs']} epochs) → {out}")
    click.echo("  " + ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k.startswith(("train_", "val_"))))
    for name, th in doc["thresholds"].items():
        vals = ", ".join(f"{p}: {t['value']:.5g}" if t["value"] is not None else f"{p}: n/a" for p, t in th.items())
        click.echo(f"  threshold {name:<9} {vals}")


def _model_kind(model_dir) -> str | None:
    """The kind in a model directory's model.json (an s3:// one: its cached copy, ``local_model_dir``)."""
    import json

    from sparkad.model.store import local_model_dir

    try:
        return json.loads((local_model_dir(model_dir) / "model.json").read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None  # the evaluation reports what is wrong with the directory


@main.command("convert-lhco")
@click.argument("h5file", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the ROOT files and fileset.yaml.")
@click.option("--dataset", default=None, help="Dataset name (default: the file's stem).")
@click.option("--max-events", type=click.IntRange(min=1), default=None, help="Convert only the first N events.")
@click.option("--jet-r", type=click.FloatRange(0.1, 1.5), default=1.0, show_default=True, help="Anti-kT radius.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@one_line_errors
def convert_lhco(h5file, out, dataset, max_events, jet_r, quiet):
    """An LHC Olympics 2020 HDF5 file (700 particles per event) → clustered PFNano-style ROOT files and a fileset
    for `sparkad extract --analysis dijet --selection lhco` (truth labels, if present, to OUT/truth/)."""
    from sparkad.generate.lhco_hdf5 import convert, read_events

    bar = None
    if not quiet:
        from tqdm import tqdm

        total = read_events(h5file, 0, 1)[2]
        bar = tqdm(total=min(total, max_events or total), unit="evt", desc="convert-lhco", dynamic_ncols=True)
    try:
        fs = convert(h5file, out, dataset=dataset, max_events=max_events, jet_r=jet_r,
                     progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    click.echo(f"wrote {fs}")


@main.command()
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False), help="Model directory (jet_vae or cwola).")
@click.option("--hlf", "hlf_dir", required=True, type=click.Path(file_okay=False), help="Dijet HLF folder (extract --analysis dijet).")
@click.option("--dataset", required=True, help="The dataset to search (e.g. the data-like mix).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for bump_hunt.json and the plots.")
@click.option("--strategy", type=click.Choice(["j1", "j2", "sum", "both", "either"]), default="both", show_default=True,
              help="Loss combination of the two jets (seeds/004 Fig. 4).")
@click.option("--efficiency", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01, show_default=True,
              help="Background fraction kept at every mjj by score > L_T(mjj) (cwola: fraction of the signal region's events).")
@click.option("--fit-on", type=click.Choice(["background", "data"]), default="background", show_default=True,
              help="Fit L_T(mjj) on the background MC's signal region or on the dataset itself.")
@click.option("--background", help="Comma-separated background MC datasets (default: the model's background labels).")
@click.option("--bins", type=click.IntRange(min=5), default=30, show_default=True, help="mjj bins of the spectra.")
@click.option("--toys", type=click.IntRange(min=0), default=200, show_default=True, help="Pseudo-spectra for the global significance.")
@click.option("--save-threshold", is_flag=True, help="Store the fitted L_T(mjj) in the model directory (mjj_thresholds.json).")
@click.option("--use-stored", is_flag=True, help="Apply the L_T(mjj) stored in the model directory instead of fitting one.")
@one_line_errors
def bumphunt(model_dir, hlf_dir, dataset, out, strategy, efficiency, fit_on, background, bins, toys, save_threshold,
             use_stored):
    """Bump hunt on the mjj spectrum before and after the anomaly selection: score > L_T(mjj) of a jet VAE
    (seeds/004), or the top --efficiency of the signal region by a CWoLa classifier (CWoLa hunting)."""
    from sparkad.evaluate.dijet import run_bump_hunt
    from sparkad.model.store import local_model_dir

    if (local_model_dir(model_dir) / "scan.json").is_file():  # a CWoLa scan: every window's hunt
        from sparkad.evaluate.weak import run_cwola_scan_hunt

        doc = run_cwola_scan_hunt(model_dir, hlf_dir, out, dataset, efficiency=efficiency, bins=bins,
                                  log=lambda m: click.echo(m, err=True))
        for r in doc["windows"]:
            lo, hi = r["signal_region"]
            if "skipped" in r:
                click.echo(f"  {lo:g}-{hi:g} GeV: skipped")
                continue
            b, a = r["before"], r["after"]
            fmt = lambda g: (f"{g['n_observed']:.0f} obs / {g['n_expected']:.1f} exp, Z {g['z_local']:.2f}"  # noqa: E731
                             if "z_local" in g else f"no fit ({g.get('error')})")
            click.echo(f"  {lo:g}-{hi:g} GeV: all {fmt(b)}; top {efficiency:g}: {fmt(a)}")
        if doc["best"]:
            click.echo(f"largest excess after the cut: {doc['best'][0]:g}-{doc['best'][1]:g} GeV, local Z "
                       f"{doc['best_z_local']:.2f}; scan_hunt.json and scan_z.png in {out}")
        return
    if _model_kind(model_dir) in ("cwola", "cathode"):
        from sparkad.evaluate.weak import run_cwola_hunt

        res = run_cwola_hunt(model_dir, hlf_dir, out, dataset, efficiencies=(efficiency,), bins=bins, n_toys=toys,
                             log=lambda m: click.echo(m, err=True))
        lo, hi = res["signal_region"]
        click.echo(f"{dataset}: {res['n_signal_region']} events in the signal region {lo:g}-{hi:g} GeV")
        for name, r in res["selections"].items():
            what = "all events" if name == "all" else \
                f"top {name} of the SR ({r['n_selected_sr']} there, {r['n_selected']} in all)"
            g = r["signal_region"]
            if "error" in g:
                click.echo(f"  {what:<40} no sideband fit: {g['error']}")
            else:
                click.echo(f"  {what:<40} SR {g['n_observed']:.0f} observed, {g['n_expected']:.1f} expected from the "
                           f"sideband fit, local Z {g['z_local']:.2f}")
        click.echo(f"cwola_hunt.json and mjj_spectra.png in {out}")
        return

    res = run_bump_hunt(model_dir, hlf_dir, out, dataset, strategy=strategy, efficiency=efficiency, fit_on=fit_on,
                        background=background.split(",") if background else None, bins=bins, n_toys=toys,
                        save_threshold=save_threshold, use_stored=use_stored, log=lambda m: click.echo(m, err=True))
    flat = res.get("background_flatness") or res["data_flatness"]
    click.echo(f"{dataset}: {res['n_signal_region']} signal-region events, {res['n_selected']} selected by "
               f"{strategy} > L_T(mjj) at q = {efficiency:g}; background efficiency vs mjj chi2/ndf "
               f"{flat['chi2']:.1f}/{flat['ndf']} (p = {flat['p_value']:.3g})")
    for name in ("all", "selected"):
        r = res[name]
        if "error" in r:
            click.echo(f"  {name:<8} no fit: {r['error']}")
        else:
            click.echo(f"  {name:<8} largest excess {r['window'][0]:.0f}-{r['window'][1]:.0f} GeV: {r['n_observed']:.0f} "
                       f"observed, {r['n_expected']:.1f} expected, local Z {r['z_local']:.2f}, global Z "
                       f"{r['z_global']:.2f} ({r['n_toys']} toys)")
    click.echo(f"bump_hunt.json and plots in {out}")


@main.command()
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False), help="Model directory.")
@click.option("--hlf", "hlf_dir", required=True, type=click.Path(file_okay=False), help="HLF folder with SM and anomaly datasets.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the table and plots.")
@click.option("--signals", help="Comma-separated anomaly datasets (default: every MC dataset outside the model's cocktail).")
@click.option("--bdt", is_flag=True, help="Also train the supervised gradient-boosted reference per signal (seeds/001 sec. 4.2).")
@click.option("--background", help="Comma-separated SM reference datasets (default: the model's cocktail; needed for models trained on data).")
@one_line_errors
def evaluate(model_dir, hlf_dir, out, signals, bdt, background):
    """ROC, AUC, TPR and LR+ at fixed FPR per anomaly sample and score: table and plots."""
    from sparkad.evaluate.report import run_evaluation

    if _model_kind(model_dir) == "jet_vae":  # the dijet search: loss strategies on the signal region
        from sparkad.evaluate.dijet import run_dijet_evaluation

        res = run_dijet_evaluation(model_dir, hlf_dir, out, signals=signals.split(",") if signals else None,
                                   background=background.split(",") if background else None)
        click.echo(res["markdown"])
        for sig, v in res["best"].items():
            click.echo(f"{sig}: best strategy {v['best_strategy']} AUC {v['auc']:.4f} vs best reference "
                       f"{v['best_reference']} {v['reference_auc']:.4f}: "
                       f"{'the model is better' if v['model_beats_references'] else 'THE REFERENCE IS AS GOOD OR BETTER'}")
        click.echo(f"background {', '.join(res['background'])}: {res['n_background_sr']} signal-region events; "
                   f"table and plots in {out}")
        return

    res = run_evaluation(model_dir, hlf_dir, out, signals=signals.split(",") if signals else None, bdt=bdt,
                         background=background.split(",") if background else None, log=lambda m: click.echo(m, err=True))
    click.echo(res["markdown"])
    for sig, v in res["versus_baselines"].items():
        click.echo(f"{sig}: best model score {v['best_model_score']} AUC {v['model_auc']:.4f} vs best baseline "
                   f"{v['best_baseline']} {v['baseline_auc']:.4f}: "
                   f"{'the model is better' if v['model_beats_baselines'] else 'THE BASELINE IS AS GOOD OR BETTER'}")
    click.echo(f"SM reference: {res['sm_reference']} ({res['n_sm']} events); table and plots in {out}")


#: the options `sparkad score` and jobs/score.py share
score_options = option_group(
    click.option("--hlf", "hlf_dir", required=True, type=click.Path(file_okay=False), help="HLF folder (sparkad extract)."),
    click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False), help="Model directory (sparkad train)."),
    click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder."),
    click.option("--score", "score_name", help="Score that defines the anomalous events (default: the model's first)."),
    click.option("--threshold", type=float, help="Anomalous: score > this value."),
    click.option("--ppm", type=float, help="Use the model's stored threshold at this many ppm of its SM validation sample (default 1000)."),
    click.option("--select-fraction", type=float, help="Set the threshold exactly so that this fraction of --select-on is anomalous."),
    click.option("--select-on", type=click.Choice(["data", "mc"]), default="data", show_default=True,
                 help="Reference sample of --select-fraction: the data, or the weighted MC background."),
    click.option("--mjj-efficiency", type=float, help="Jet VAE: select with its stored L_T(mjj) at this background "
                 "efficiency (`sparkad bumphunt --save-threshold`); --score names the strategy (default both)."),
    click.option("--background", help="Comma-separated MC background datasets for the ASTF (default: the model's cocktail)."),
    click.option("--analysis-config", type=click.Path(dir_okay=False), help="YAML overriding conf/analysis.yaml."),
    click.option("--no-products", is_flag=True, help="Scores only: no histograms, ASTF, yields or run check."),
    click.option("--scores", "keep_scores", help="Comma-separated scores to compute and store, or 'all' (default: the "
                 "model's headline score, the selection score and the classic baselines)."),
    click.option("--batch-rows", type=click.IntRange(min=1), default=None,
                 help="Rows per Arrow batch (default: the model's: 200 000 HLF events, 4096 for a jet VAE)."),
    click.option("--target-rows", type=click.IntRange(min=1), default=None,
                 help="Events per scoring task, a fragment of the input (default: the model's: 2 000 000, 10 000 for "
                      "a jet VAE)."),
)


def score_arguments(hlf_dir, model_dir, out, score_name, threshold, ppm, select_fraction, select_on, mjj_efficiency,
                    background, analysis_config, no_products, keep_scores, batch_rows, target_rows) -> dict:
    """The ``score_options`` values as the arguments of ``sparkad.score.run.run_analysis``."""
    return {"hlf_dir": hlf_dir, "model_dir": model_dir, "out": out, "score": score_name, "threshold": threshold,
            "ppm": ppm, "fraction": select_fraction, "select_on": select_on, "mjj_efficiency": mjj_efficiency, "background": split_list(background),
            "analysis_config": analysis_config, "products": not no_products, "scores": keep_scores, "batch_rows": batch_rows,
            "target_rows": target_rows}


@main.command()
@score_options
@click.option("--engine", type=click.Choice(["spark", "dask"]), default="spark", show_default=True)
@spark_master_option()
@click.option("--workers", type=int, default=2, show_default=True, help="Local Dask workers.")
@dask_scheduler_option
@one_line_errors
def score(engine, master, workers, scheduler, **options):
    """Score every event of an HLF folder and build the analysis products (OUT/scores, OUT/products)."""
    from sparkad.score.run import run_analysis

    out = options["out"]
    rep = run_analysis(engine=engine, master=master or "local[*]", workers=workers, scheduler=scheduler,
                       **score_arguments(**options), log=lambda m: click.echo(m, err=True))
    sel = rep["anomaly_threshold"]
    click.echo(f"scored {rep['total_events']} events with {rep['model_kind']} ({', '.join(rep['scores'])}) "
               f"on {engine} in {rep['elapsed_s']:.1f} s → {out}")
    click.echo(f"anomalous: {sel['score']} > {sel['threshold']:.6g} ({sel['source']})")
    per = (rep.get("summary") or {}).get("datasets") or {}
    for name, n in sorted(rep["events"].items()):
        extra = f"  {per[name]['anomalous']:>8} anomalous ({rep['roles'][name]})" if name in per else ""
        click.echo(f"  {name:<20} {n:>10}{extra}")


@main.command()
@click.option("--scores", "score_out", required=True, type=click.Path(file_okay=False), help="Output folder of `sparkad score`.")
@click.option("--monitor", "monitor_dir", type=click.Path(file_okay=False), help="Monitor folder (`sparkad monitor`) to include.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False), help="Model directory (default: the one the scores name).")
@click.option("--out", "-o", "out_html", type=click.Path(dir_okay=False), help="HTML file (default: SCORES/report.html).")
@click.option("--title", default="sparkad report", show_default=True)
@one_line_errors
def report(score_out, monitor_dir, model_dir, out_html, title):
    """One self-contained HTML page: plots, ASTF, yields, flagged runs, provenance."""
    from sparkad.core import storage
    from sparkad.report.html import write_report

    path = write_report(score_out, out_html or storage.join(storage.location(score_out), "report.html"),
                        monitor_dir=monitor_dir, model_dir=model_dir, title=title)
    click.echo(f"report → {path}")


def _register_optional_commands():
    from sparkad.demo import demo
    from sparkad.generate.cli import generate
    from sparkad.monitor.cli import monitor

    main.add_command(generate)
    main.add_command(monitor)
    main.add_command(demo)


_register_optional_commands()

if __name__ == "__main__":
    main()
