"""Run / luminosity-section structure of data-like samples, and fault windows.

Model: runs are taken in order from a Run2012B-like run list and grouped into LHC fills
(`runs_per_fill` consecutive runs). Each run has a number of luminosity sections (LS) of 23.31 s.
The instantaneous luminosity decays exponentially within a fill, L(t) = L_fill exp(-t / lifetime),
with t counted from the start of the fill (runs of a fill follow each other with a short gap) and
L_fill varying by fill (uniform 0.8-1.0 of the peak). The expected number of events in an LS is
proportional to L x 23.31 s; the sample's N events are distributed over the LS multinomially, so
counts follow the profile. The mean pile-up of an LS is peak_pileup x L / L_peak.

Events are numbered so that (run, luminosityBlock, event) is monotonic over the whole sample; the
n-th event of the sample is found without materialising all of them (file slices are independent).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LS_SECONDS = 23.31

# Run2012B-like run numbers (the real Run2012B range is 193834-196531)
RUN2012B_RUNS = [
    194050, 194051, 194052, 194075, 194076, 194108, 194115, 194117, 194119, 194120, 194150, 194151,
    194153, 194199, 194210, 194223, 194224, 194225, 194270, 194303, 194304, 194305, 194314, 194315,
    194317, 194424, 194427, 194428, 194429, 194439, 194455, 194464, 194479, 194480, 194533, 194535,
    194619, 194631, 194643, 194644, 194691, 194699, 194702, 194704, 194711, 194712, 194735, 194778,
    194789, 194790, 194825, 194896, 194897, 194912, 194914, 194915, 195013, 195014, 195016, 195099,
    195109, 195112, 195113, 195114, 195115, 195147, 195163, 195164, 195165, 195251, 195265, 195266,
    195303, 195304, 195378, 195379, 195390, 195396, 195397, 195398, 195399, 195530, 195540, 195551,
    195552, 195633, 195644, 195645, 195649, 195655, 195656, 195658, 195749, 195757, 195758, 195774,
    195775, 195776, 195841, 195868, 195913, 195915, 195916, 195917, 195918, 195919, 195923, 195925,
    195926, 195929, 195930, 195937, 195947, 195948, 195950, 195963, 195970, 196019, 196027, 196046,
    196047, 196048, 196197, 196199, 196200, 196202, 196203, 196218, 196239, 196249, 196250, 196252,
    196334, 196349, 196357, 196359, 196362, 196363, 196364, 196437, 196438, 196452, 196453, 196495,
    196509, 196531,
]
ERAS = {"Run2012B": RUN2012B_RUNS}

RUNS_DEFAULTS = {
    "era": "Run2012B",
    "first_run": 0,            # index into the era's run list
    "n_runs": 10,
    "lumis_per_run": [40, 120],
    "runs_per_fill": 3,
    "lifetime_hours": 10.0,
    "gap_minutes": 15.0,
    "peak_pileup": 30.0,
}


@dataclass
class RunStructure:
    run: np.ndarray        # per LS
    lumi: np.ndarray       # per LS (luminosityBlock)
    fill: np.ndarray       # per LS
    inst_lumi: np.ndarray  # per LS, relative to the peak
    mu: np.ndarray         # mean pile-up per LS
    expected: np.ndarray   # expected events per LS (sums to N)
    counts: np.ndarray     # events per LS (sums to N)

    @property
    def n_events(self) -> int:
        return int(self.counts.sum())

    def events(self, start: int, stop: int):
        """run, luminosityBlock, event, mu for global event indices [start, stop)."""
        k = np.arange(start, stop, dtype=np.int64)
        cum = np.cumsum(self.counts)
        ls = np.searchsorted(cum, k, side="right")
        run = self.run[ls]
        # first global index of each run -> event number within the run
        run_change = np.r_[True, self.run[1:] != self.run[:-1]]
        first_ls_of_run = np.maximum.accumulate(np.where(run_change, np.arange(len(self.run)), 0))
        start_of_ls = cum - self.counts
        run_start = start_of_ls[first_ls_of_run]
        event = (k - run_start[ls] + 1).astype(np.uint64)
        return run.astype(np.int32), self.lumi[ls].astype(np.uint32), event, self.mu[ls]


def selected_runs(cfg: dict) -> list[int]:
    """The run numbers a `runs:` configuration selects (ValueError with the reason if it cannot)."""
    c = {**RUNS_DEFAULTS, **(cfg or {})}
    runs_list = c.get("run_list") or ERAS.get(c["era"])
    if runs_list is None:
        raise ValueError(f"unknown era {c['era']!r}; known: {', '.join(ERAS)} (or give run_list)")
    first, nr = int(c["first_run"]), int(c["n_runs"])
    if nr < 1 or first < 0 or first + nr > len(runs_list):
        raise ValueError(f"runs: first_run={first}, n_runs={nr} outside the {len(runs_list)} runs of the list")
    return [int(r) for r in runs_list[first:first + nr]]


def build(cfg: dict, n_events: int, rng) -> RunStructure:
    c = {**RUNS_DEFAULTS, **(cfg or {})}
    runs_list = selected_runs(c)
    nr = len(runs_list)
    lo, hi = (int(x) for x in c["lumis_per_run"])
    if lo < 1 or hi < lo:
        raise ValueError(f"runs: bad lumis_per_run {c['lumis_per_run']!r}")
    runs = np.asarray(runs_list, dtype=np.int64)
    nls = rng.integers(lo, hi + 1, nr)
    fill_of_run = np.arange(nr) // max(int(c["runs_per_fill"]), 1)
    fill_peak = rng.uniform(0.8, 1.0, fill_of_run.max() + 1)
    tau = float(c["lifetime_hours"]) * 3600.0
    gap = float(c["gap_minutes"]) * 60.0
    run_ls, lumi_ls, fill_ls, t_ls = [], [], [], []
    t_fill = 0.0
    for i in range(nr):  # loop over runs (tens), not events
        if i == 0 or fill_of_run[i] != fill_of_run[i - 1]:
            t_fill = 0.0
        ls = np.arange(1, nls[i] + 1)
        run_ls.append(np.full(nls[i], runs[i]))
        lumi_ls.append(ls)
        fill_ls.append(np.full(nls[i], fill_of_run[i]))
        t_ls.append(t_fill + (ls - 0.5) * LS_SECONDS)
        t_fill += nls[i] * LS_SECONDS + gap
    run_a = np.concatenate(run_ls)
    fill_a = np.concatenate(fill_ls)
    inst = fill_peak[fill_a] * np.exp(-np.concatenate(t_ls) / tau)
    p = inst / inst.sum()
    counts = rng.multinomial(n_events, p)
    return RunStructure(run=run_a, lumi=np.concatenate(lumi_ls), fill=fill_a, inst_lumi=inst,
                        mu=float(c["peak_pileup"]) * inst, expected=n_events * p, counts=counts)


def fault_mask(spec: dict, run: np.ndarray, lumi: np.ndarray) -> np.ndarray:
    """Events inside a fault window: run in spec['runs'] (all runs if absent) and, if given,
    lumi within spec['lumis'] = [first, last] (inclusive)."""
    mask = np.ones(len(run), bool)
    if spec.get("runs") is not None:
        mask &= np.isin(run, np.asarray(spec["runs"], dtype=np.int64))
    if spec.get("lumis") is not None:
        a, b = spec["lumis"]
        mask &= (lumi >= a) & (lumi <= b)
    return mask
