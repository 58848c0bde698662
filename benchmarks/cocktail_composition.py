"""SM cocktail composition of the generated sm13 preset vs seeds/001 Table 1.

    python benchmarks/cocktail_composition.py [--events 500000] [--workers 2] [--out DIR]

Generates sm13 (`sparkad.generate.api.generate`), extracts it with the real pipeline (vae21,
single_lepton, futures executor) and builds the cocktail (`sparkad.train.cocktail.build_training_data`);
prints one JSON line per SM process: our fraction, the paper's (the table's column and the one its
sigma x acceptance x trigger implies), the ratio, and our selection efficiency.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

SM = ["wjets", "qcd", "dyjets", "ttbar"]
PAPER_FRACTION = {"wjets": 59.2, "qcd": 33.8, "dyjets": 6.7, "ttbar": 0.3}
PAPER_ACC_TRIG = {"wjets": (58.0, 0.556, 0.68), "qcd": (1.6e5, 0.0008, 0.096), "dyjets": (20.0, 0.16, 0.77),
                  "ttbar": (0.7, 0.37, 0.49)}  # sigma [nb], acceptance, L1 trigger efficiency


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=float, default=500_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    a = ap.parse_args(argv)

    from sparkad.train.cocktail import CocktailConfig, build_training_data, load_hlf
    from sparkad.extract.run import ExtractOptions, run_extraction
    from sparkad.extract.fileset import load_fileset
    from sparkad.generate.api import generate

    tmp = None if a.out else tempfile.TemporaryDirectory()
    out = Path(a.out or tmp.name)
    t0 = time.time()
    fs = generate("sm13", n_events=int(a.events), out_dir=out / "gen", seed=a.seed, workers=a.workers,
                  progress=False)
    t1 = time.time()
    report = run_extraction(load_fileset(fs), ExtractOptions.from_conf(
        out / "hlf", feature_set="vae21", executor="futures", workers=a.workers, progress=False),
        log=lambda m: None)
    t2 = time.time()
    df, report = load_hlf(out / "hlf")
    comp = build_training_data(df, report, CocktailConfig(background=SM)).composition
    se = {k: s * acc * trig for k, (s, acc, trig) in PAPER_ACC_TRIG.items()}
    for k in SM:
        ds = report["datasets"][k]
        ours = 100 * comp[k]["fraction"]
        print(json.dumps({
            "process": k, "ours_percent": round(ours, 4), "paper_percent": PAPER_FRACTION[k],
            "ratio": round(ours / PAPER_FRACTION[k], 4),
            "paper_sigma_eff_percent": round(100 * se[k] / sum(se.values()), 4),
            "ratio_to_sigma_eff": round(ours / (100 * se[k] / sum(se.values())), 4),
            "selected": ds["written"], "generated": ds["events_in"],
            "our_efficiency": round(ds["written"] / ds["events_in"], 5),
            "paper_acc_x_trig": round(PAPER_ACC_TRIG[k][1] * PAPER_ACC_TRIG[k][2], 6),
            "xsec_pb": ds["weighting"].get("xsec_pb")}))
    print(f"# sm13 {int(a.events)} events: generate {t1 - t0:.1f} s, extract {t2 - t1:.1f} s", file=sys.stderr)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
