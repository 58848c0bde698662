"""What an analysis pass selects and histograms: dataset roles, the anomaly threshold, the binning.

All of it is decided on the driver before the pass and shipped to the tasks as an ``AnalysisSpec``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sparkad.analysis.aggregates import AnalysisSpec
from sparkad.analysis.astf import binning_edges, parse_cuts
from sparkad.core.config import as_number, check_keys, load_conf, load_yaml, merge_config, require_mapping
from sparkad.core.errors import ConfigError, SparkadError
from sparkad.model.directory import Scorer, open_scorer, scorer_options
from sparkad.core import storage
from sparkad.core.atomic import write_json_atomic

SELECT_ON = ("data", "mc")


#: analyses with their own defaults in conf/analysis.yaml (a section that replaces the keys it names)
ANALYSES = ("dijet",)


def load_analysis_conf(path: str | Path | None = None, analysis: str | None = None) -> dict:
    """conf/analysis.yaml (with the section of the extraction's ``analysis`` in place of the keys it
    names, e.g. the dijet signal region as the post-selection), or a user file overriding any of its
    top-level keys."""
    doc = require_mapping(load_conf("analysis"), "conf/analysis.yaml")
    sections = {a: require_mapping(doc.pop(a, {}), f"conf/analysis.yaml: {a}") for a in ANALYSES}
    for k, v in sections.get(analysis, {}).items():
        doc[k] = merge_config(doc[k], v) if isinstance(doc.get(k), dict) else v
    where = "conf/analysis.yaml"
    if path:
        where = f"{path} (over conf/analysis.yaml)"
        user = require_mapping(load_yaml(path) or {}, str(path))
        check_keys(user, doc.keys(), str(path))
        for k, v in user.items():
            if k in ("astf", "postselection", "run_shapes"):
                require_mapping(v, f"{path}: {k}")
                check_keys(v, doc[k].keys(), f"{path}: {k}")
                if k == "astf" and "features_for_grid" in v:
                    doc["_grid_given"] = True  # the default grid falls back quietly; a user's must exist
        doc = merge_config(doc, user, whole=("histograms.*",))
    doc["_source"] = where
    _check_astf(doc.get("astf"), where)
    _check_run_shapes(doc.get("run_shapes"), where)
    return doc


def _check_run_shapes(r, where: str) -> None:
    r = require_mapping(r if r is not None else {}, f"{where}: run_shapes")
    feats = r.get("features", [])
    if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats):
        raise ConfigError(f"{where}: run_shapes.features must be a list of feature names, got {feats!r}")
    alpha = as_number(r.get("alpha", 0.01), f"{where}: run_shapes.alpha")
    if not 0 < alpha < 1:
        raise ConfigError(f"{where}: run_shapes.alpha must lie in (0, 1), got {alpha!r}")
    if as_number(r.get("min_events", 100), f"{where}: run_shapes.min_events") < 1:
        raise ConfigError(f"{where}: run_shapes.min_events must be >= 1")


def _check_astf(a, where: str) -> None:
    """The ASTF settings are used after the scoring pass: checked before it, so a typo costs nothing."""
    from sparkad.analysis.astf import METHODS

    a = require_mapping(a, f"{where}: astf")
    if a.get("method") not in METHODS:
        raise ConfigError(f"{where}: astf.method must be one of {', '.join(METHODS)}, got {a.get('method')!r}")
    cl = as_number(a.get("cl"), f"{where}: astf.cl")
    if not 0 < cl < 1:
        raise ConfigError(f"{where}: astf.cl is a confidence level: must lie in (0, 1), got {a.get('cl')!r}")
    if as_number(a.get("min_entries"), f"{where}: astf.min_entries") < 0:
        raise ConfigError(f"{where}: astf.min_entries must be >= 0, got {a.get('min_entries')!r}")
    grid = a.get("features_for_grid")
    if grid is not None and (not isinstance(grid, list) or not all(isinstance(f, str) for f in grid)):
        raise ConfigError(f"{where}: astf.features_for_grid must be a list of feature names, got {grid!r}")


def dataset_roles(hlf_report: dict, scorer: Scorer, background: list[str] | None = None) -> dict:
    """dataset → 'data' | 'background' | 'other'. The MC background is the user's list, else the
    model's SM cocktail when it was trained on MC, else every MC dataset (a model trained on data)."""
    datasets = hlf_report["datasets"]
    if background:
        unknown = [b for b in background if b not in datasets]
        if unknown:
            raise SparkadError(f"background dataset(s) {', '.join(unknown)} not in the HLF folder "
                               f"(have {', '.join(datasets)})")
        bkg = set(background)
    else:
        prov = scorer.meta.get("provenance", {})
        trained_on_data = (prov.get("cocktail") or {}).get("train_on_data")
        cocktail = [d for d in prov.get("datasets", []) if d in datasets and not datasets[d].get("is_data")]
        bkg = set(cocktail) if cocktail and not trained_on_data else \
            {n for n, d in datasets.items() if not d.get("is_data")}
    return {n: "data" if d.get("is_data") else ("background" if n in bkg else "other") for n, d in datasets.items()}


def resolve_anomaly_threshold(scorer: Scorer, roles: dict, *, score: str | None = None, threshold: float | None = None,
                              ppm: float | None = None, fraction: float | None = None, on: str = "data",
                              mjj_efficiency: float | None = None) -> dict:
    """How the anomaly threshold is set, in order of precedence: a value given by the user; a
    fraction of a reference sample (data, or the weighted MC background), found exactly from the scoring
    pass (score_folder); the model's stored threshold at ``ppm`` of its SM validation sample (default: the
    scorer's ``default_ppm``, else 1000 ppm).
    A jet VAE can instead select with its stored mjj-dependent threshold L_T(mjj) at ``mjj_efficiency``
    (``sparkad bumphunt --save-threshold``): the selection score is then L − L_T(mjj), above 0."""
    if mjj_efficiency is not None:
        return _mjj_threshold(scorer, score, mjj_efficiency, given=(threshold, ppm, fraction))
    score = score or scorer.score_names[0]
    if score not in scorer.score_names:
        raise SparkadError(f"{scorer.model_dir}: model has no score {score!r} (scores: {', '.join(scorer.score_names)})")
    if threshold is not None:
        if not np.isfinite(float(threshold)):  # `score > nan` is never true: every event "not anomalous"
            raise SparkadError(f"--threshold must be a finite number, got {threshold}")
        return {"score": score, "threshold": float(threshold), "source": "given"}
    if fraction is not None:
        if not 0 < fraction < 1:
            raise SparkadError(f"--select-fraction must be in (0, 1), got {fraction}")
        if on not in SELECT_ON:
            raise SparkadError(f"--select-on must be one of {', '.join(SELECT_ON)}, got {on!r}")
        ref = sorted(n for n, r in roles.items() if r == ("data" if on == "data" else "background"))
        if not ref:
            raise SparkadError(f"no {'data' if on == 'data' else 'MC background'} dataset to set the threshold on")
        return {"score": score, "fraction": float(fraction), "on": on, "reference_datasets": ref,
                "source": f"exact: fraction {fraction:g} of {'data' if on == 'data' else 'weighted MC background'}"}
    ppm = float(getattr(scorer, "default_ppm", 1000.0)) if ppm is None else float(ppm)
    key = f"{ppm:g}ppm"
    stored = scorer.thresholds.get(score, {}).get(key)
    if stored is None:
        raise SparkadError(f"{scorer.model_dir}: no stored threshold at {key} (stored: "
                           f"{', '.join(scorer.thresholds.get(score, {}))}); give --threshold or --select-fraction")
    if stored.get("value") is None:
        raise SparkadError(f"{scorer.model_dir}: threshold at {key} unavailable ({stored.get('note')}); "
                           "give --threshold or --select-fraction")
    return {"score": score, "threshold": float(stored["value"]), "ppm": ppm,
            "source": f"model: {key} of {getattr(scorer, 'threshold_reference', 'its SM validation sample')}"}


def _mjj_threshold(scorer, score: str | None, efficiency: float, given) -> dict:
    from sparkad.model.jet_vae import HEADLINE, STRATEGIES, mjj_score_name

    if any(g is not None for g in given):
        raise SparkadError("--mjj-efficiency sets the threshold: give it without --threshold, --ppm or --select-fraction")
    if getattr(scorer, "kind", None) != "jet_vae":
        raise SparkadError(f"{scorer.model_dir}: --mjj-efficiency selects with a jet VAE's L_T(mjj); this is a "
                           f"{scorer.kind} model")
    strategy = score or HEADLINE
    if strategy not in STRATEGIES:
        raise SparkadError(f"--mjj-efficiency: --score must be a strategy ({', '.join(STRATEGIES)}), got {strategy!r}")
    stored = scorer.stored_threshold(strategy, efficiency)  # says what is stored when this one is not
    return {"score": mjj_score_name(strategy, efficiency), "threshold": 0.0, "strategy": strategy,
            "efficiency": efficiency, "mjj_threshold": stored,
            "source": f"model: L_T(mjj) of {strategy} at {efficiency:g} of its {stored.get('fit_on', 'background')} "
                      f"(quantile regression)"}


def feature_edges(feature: str, conf_hist: dict, scorer: Scorer, source: str = "conf/analysis.yaml") -> np.ndarray:
    """Binning from conf/analysis.yaml ``histograms``; a feature not listed there gets 50 bins over
    the model's median ± 6 scales (integer-centred bins for one-hot features)."""
    spec = conf_hist.get(feature)
    where = f"{source} histograms.{feature}"
    if spec is not None:
        return binning_edges(spec, where)
    pre = scorer.pre
    if pre is None:  # a model without feature pre-processing (a jet VAE): give the binning in the config
        raise ConfigError(f"{source}: no binning for feature {feature!r} (add histograms.{feature}: "
                          f"{{bins: N, lo: x, hi: y}} with --analysis-config)")
    if feature in pre.discrete:
        cats = np.asarray(sorted(pre.discrete[feature]), np.float64)
        return np.arange(cats.min() - 0.5, cats.max() + 1.5)
    if feature in pre.median:
        m, s = float(pre.median[feature]), float(pre.scale[feature]) or 1.0
        return np.linspace(m - 6 * s, m + 6 * s, 51)
    return np.linspace(0.0, 1.0, 51)


def build_spec(scorer: Scorer, anomaly: dict, roles: dict, hlf_features: list[str], conf: dict) -> AnalysisSpec:
    """The AnalysisSpec: every HLF feature histogrammed, the PPS cuts parsed and checked."""
    hist_conf = conf.get("histograms") or {}
    where = conf.get("_source", "conf/analysis.yaml")
    try:
        cuts = parse_cuts((conf.get("postselection") or {}).get("cuts"))
    except ValueError as e:
        raise ConfigError(f"{where} postselection.cuts: {e}") from None
    for cut in cuts:
        if cut.feature not in hlf_features:
            raise ConfigError(f"{where} postselection.cuts: '{cut}' uses {cut.feature!r}, not an HLF "
                              f"feature here ({', '.join(hlf_features)})")
    unknown = [f for f in (conf.get("astf") or {}).get("features_for_grid") or [] if f not in hlf_features]
    if unknown and conf.get("_grid_given"):
        raise ConfigError(f"{where} astf.features_for_grid: {', '.join(unknown)} not HLF feature(s) here "
                          f"({', '.join(hlf_features)})")
    return AnalysisSpec(features=list(hlf_features),
                        edges={f: feature_edges(f, hist_conf, scorer, where) for f in hlf_features},
                        score=anomaly["score"], threshold=float(anomaly["threshold"]),
                        score_edges={n: scorer.histogram_edges(n) for n in scorer.score_names}, cuts=cuts,
                        data_datasets=frozenset(n for n, r in roles.items() if r == "data"),
                        score_thresholds=comparison_thresholds(scorer),
                        run_shape_features=[f for f in (conf.get("run_shapes") or {}).get("features") or []
                                            if f in hlf_features])


def comparison_thresholds(scorer: Scorer, ppm: float = 1000.0) -> dict:
    """Each score's threshold at ``ppm`` of the model's SM validation sample (scores without one left out)."""
    out = {}
    for name in scorer.score_names:
        value = (scorer.thresholds.get(name, {}).get(f"{ppm:g}ppm") or {}).get("value")
        if value is not None:
            out[name] = float(value)
    return out


def _luminosity_text(hlf_report: dict) -> str:
    lumi = None
    try:
        from sparkad.extract.fileset import load_fileset
        lumi = load_fileset(hlf_report["fileset"]).luminosity if hlf_report.get("fileset") else None
    except Exception:  # the fileset may have moved since extraction: the label is cosmetic
        lumi = None
    return f"{lumi / 1000:.1f} fb$^{{-1}}$" if lumi else ""


def _run_check(per_ls, out_dir: Path) -> dict:
    """The run-period clustering check of the data (settings: conf/monitor.yaml, as the monitor's)."""
    from sparkad.monitor.runs import load_monitor_conf
    from sparkad.analysis.run_checks import plot_rate_vs_run, run_period_check

    res = run_period_check(per_ls, load_monitor_conf()["check"])
    write_json_atomic(res, out_dir / "run_check.json")
    plot_rate_vs_run(res, out_dir / "plots" / "rate_vs_run.png")
    return {"flagged": res["flagged"], "n_runs": len(res["runs"]), "change_points": res["change_points"],
            "plot": "plots/rate_vs_run.png"}


def kept_scores(scorer: Scorer, given, selection_score: str) -> list[str] | None:
    """The scores a pass computes and stores (``--scores``): the user's comma-separated list or list,
    plus the score the selection needs; "all" (None returned: every score of the model); by default
    the model's headline score, the selection score and the classic baselines (docs: README, "Scores
    computed")."""
    if isinstance(given, str):
        if given.strip() == "all":
            return None
        given = [g.strip() for g in given.split(",") if g.strip()]
    if given is None:
        given = [scorer.all_score_names[0], *scorer.baseline_scores]
    elif not given:
        raise SparkadError("--scores: give score names (comma-separated) or 'all'")
    unknown = [g for g in given if g not in scorer.all_score_names]
    if unknown:
        raise SparkadError(f"--scores: model {scorer.model_dir} has no score(s) {', '.join(unknown)} "
                           f"(scores: {', '.join(scorer.all_score_names)}, or 'all')")
    keep = set(given) | {selection_score}
    return [n for n in scorer.all_score_names if n in keep]


def run_analysis(hlf_dir, model_dir, out, *, engine: str = "spark", master: str | None = None, spark=None,
                 workers: int = 2, scheduler: str | None = None, score: str | None = None, scores=None,
                 threshold: float | None = None, ppm: float | None = None, fraction: float | None = None,
                 select_on: str = "data", mjj_efficiency: float | None = None,
                 background: list[str] | None = None, analysis_config=None,
                 products: bool = True, batch_rows: int | None = None, target_rows: int | None = None,
                 log=lambda m: None) -> dict:
    """Score an HLF folder and build every analysis product in one pass through the networks (followed
    by an aggregation pass when the threshold is a fraction of a sample). ``scores``: what the pass computes and stores (``kept_scores``). Returns the
    score report (also in OUT/_score_report.json, written last)."""
    from sparkad.analysis.products import write_products
    from sparkad.score.engines import Engine, check_batch_sizes, finish, hlf_report, score_folder

    from sparkad.model.store import local_model_dir, model_text

    # an s3:// model: copied once to the local cache; the engines ship its files to the tasks as for a local one
    model_name, model_dir = model_text(model_dir), local_model_dir(model_dir)
    hlf_dir, out = storage.location(hlf_dir), storage.location(out)
    check_batch_sizes(batch_rows, target_rows)
    report = hlf_report(hlf_dir)
    options = scorer_options(model_dir)  # a jet VAE's stored L_T(mjj)
    scorer = open_scorer(model_dir, options=options)
    if scorer.kind == "jet_vae" and report.get("analysis") != "dijet":
        raise SparkadError(f"{hlf_dir}: not a dijet extraction (run `sparkad extract --analysis dijet`): model "
                           f"{model_dir} is a jet VAE, it scores the jets' constituents")
    roles = dataset_roles(report, scorer, background)
    labels = {n: str(d.get("label") or n) for n, d in report["datasets"].items()}
    anomaly = resolve_anomaly_threshold(scorer, roles, score=score, threshold=threshold, ppm=ppm, fraction=fraction,
                                        on=select_on, mjj_efficiency=mjj_efficiency)
    keep = kept_scores(scorer, scores, anomaly["score"])
    conf = load_analysis_conf(analysis_config, report.get("analysis"))
    builder = (lambda sc, sel: build_spec(sc, sel, roles, list(report["features"]), conf)) if products else None
    with Engine(engine, master=master, spark=spark, workers=workers, scheduler=scheduler) as eng:
        res = score_folder(hlf_dir, model_dir, out, engine=eng, spec_builder=builder, anomaly=anomaly,
                           batch_rows=batch_rows, target_rows=target_rows, scores=keep, model_options=options,
                           log=log)
    extra = {"roles": roles, "model": model_name}  # the URI of an s3:// model, not its cached copy
    if products:
        t = time.time()
        if storage.is_remote(out):  # written in a local folder (plots, tables: on the driver), then uploaded
            import tempfile
            with tempfile.TemporaryDirectory(prefix="sparkad-products-") as tmpdir:
                summary = write_products(tmpdir, res, roles, labels, conf, _luminosity_text(report),
                                         run_check=_run_check, log=log)
                storage.remove_tree(storage.join(out, "products"))
                storage.upload_tree(Path(tmpdir) / "products", storage.join(out, "products"))
        else:
            summary = write_products(out, res, roles, labels, conf, _luminosity_text(report), run_check=_run_check,
                                     log=log)
        extra["products"] = "products"
        extra["summary"] = {k: summary.get(k) for k in ("anomaly_threshold", "datasets")}
        extra["timings"] = dict(res["report"]["timings"], products_s=round(time.time() - t, 3))
    elif storage.is_dir(storage.join(out, "products")):  # products of an earlier pass would not match these scores
        storage.remove_tree(storage.join(out, "products"))
    return finish(out, res, extra)
