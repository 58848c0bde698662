"""Pythia 8 dijet engine (`engine: pythia_dijet`): the resonant-search samples of seeds/004 at particle
level, written as a PFNano-style NanoAOD file that `sparkad extract --analysis dijet` reads exactly like a
real one.

Processes (13 TeV by default):
  qcd_dijet  QCD 2 -> 2 (`HardQCD:all`) with pT-hat > `pt_hat_min` (a trigger-like leading-jet bias);
  rsg_ww     Randall-Sundrum graviton G* (gg and ffbar production) of mass `mass` -> W W, W -> q q';
  rsg_tt     the same G* -> t tbar, both tops hadronic (W -> q q');
  wprime_xy  the LHC Olympics R&D signal (seeds/002-003): W' (`NewGaugeBoson:ffbar2Wprime`) of mass `mass`
             -> X Y, X -> q q' (mass `mx`, charged) and Y -> q qbar (mass `my`, neutral): two new narrow
             scalar resonances decaying isotropically (defaults 3500 / 500 / 100 GeV, the R&D data set's).

Per batch of events (`DijetSource.branches`):
1. `Pythia.nextBatch` (awkward particle record, no per-particle Python);
2. the visible final state (status > 0, no neutrinos, |eta| < 5) clustered by FastJet, anti-kT R = `jet_r`
   (0.8 as seeds/004; 1.0 for the LHC Olympics convention), jets above `jet_pt_min` in decreasing pT;
3. each jet's substructure by FastJet contrib (through the `fastjet` package): its constituents reclustered
   with Cambridge/Aachen, the soft-drop mass (beta = 0, z_cut = 0.1, R0 = jet_r) and N-subjettiness
   tau_1..tau_3 (normalised measure, beta = 1, R0 = jet_r, one-pass kT axes: CMS's NanoAOD convention);
4. the branches: `FatJet_{pt,eta,phi,mass,msoftdrop,tau1,tau2,tau3,nConstituents}`, the jets' constituents
   as `PFCands_{pt,eta,phi,mass,pdgId}` and the PFNano link table `FatJetPFCands_{jetIdx,pFCandsIdx}`
   (constituents of a jet in decreasing pT), `genWeight`, `Truth_process`, `Truth_isSignal`.
Pile-up (`pileup_mu` > 0): Poisson(pileup_mu) minimum-bias events (`SoftQCD:inelastic`, a second Pythia
instance) overlaid on each event's particles before clustering; with `pileup_chs` (default) their charged
particles are removed first — charged-hadron subtraction with a perfect vertex association, as CMS's CHS
jets. No detector response yet: the particles are the "PF candidates" (docs/dijet.md).

Nothing here is imported at `sparkad` import time; pythia8mc and fastjet are imported when a source is made.
"""
from __future__ import annotations

import numpy as np

from sparkad.generate.pythia import base_settings, make_pythia, sigma_pb

BATCH_MAX = 500            # Pythia events per nextBatch call
PARTICLE_ETA_MAX = 5.0     # jet input particles
SOFTDROP_BETA, SOFTDROP_ZCUT = 0.0, 0.1
TAU_BETA = 1.0
TAU_AXES = "OnePass_KT_Axes"
TAU_MEASURE = "NormalizedMeasure"
GRAVITON, W_BOSON, TOP = 5100039, 24, 6
WPRIME, X_SCALAR, Y_SCALAR = 34, 9000001, 9000002  # X, Y: new particle codes (Pythia's 9 000 000 range)
HADRONIC_W = "24:onMode = off", "24:onIfAny = 1 2 3 4 5"

PROCESS_DEFAULTS = {
    "qcd_dijet": {"pt_hat_min": 600.0},
    "rsg_ww": {"mass": 2500.0},
    "rsg_tt": {"mass": 2500.0},
    "wprime_xy": {"mass": 3500.0, "mx": 500.0, "my": 100.0},
}
PROCESS_IDS = {"qcd_dijet": 5, "rsg_ww": 111, "rsg_tt": 112, "wprime_xy": 113}  # Truth_process
LABELS = {"qcd_dijet": "QCD", "rsg_ww": "G_WW", "rsg_tt": "G_tt", "wprime_xy": "Wp_XY"}
SIGNALS = {"rsg_ww", "rsg_tt", "wprime_xy"}
COMMON_DEFAULTS = {"jet_r": 0.8, "jet_pt_min": 30.0, "settings": [], "pileup_mu": 0.0, "pileup_chs": True}
PILEUP_SEED_OFFSET = 450_000_000  # the minimum-bias Pythia's seed: the hard one's, shifted (mod 9e8)
# the substructure conventions, recorded in the fileset and in the extracted Parquet's metadata
SUBSTRUCTURE = {"softdrop": {"beta": SOFTDROP_BETA, "zcut": SOFTDROP_ZCUT, "recluster": "Cambridge/Aachen"},
                "nsubjettiness": {"measure": TAU_MEASURE, "beta": TAU_BETA, "axes": TAU_AXES}}


def process_settings(process: str, params: dict) -> list[str]:
    """Pythia settings of a dijet process (see the module docstring) plus the sample's own `settings`."""
    if process == "qcd_dijet":
        out = ["HardQCD:all = on", f"PhaseSpace:pTHatMin = {float(params['pt_hat_min'])!r}"]
    elif process in ("rsg_ww", "rsg_tt"):
        decay = W_BOSON if process == "rsg_ww" else TOP
        out = ["ExtraDimensionsG*:gg2G* = on", "ExtraDimensionsG*:ffbar2G* = on",
               f"{GRAVITON}:m0 = {float(params['mass'])!r}", f"{GRAVITON}:onMode = off",
               f"{GRAVITON}:onIfAny = {decay}", *HADRONIC_W]
    elif process == "wprime_xy":
        m, mx, my = (float(params[k]) for k in ("mass", "mx", "my"))
        if not mx + my < m:
            raise ValueError(f"wprime_xy: mx + my ({mx:g} + {my:g} GeV) must be below the W' mass {m:g} GeV")
        # id:new = name antiName spinType chargeType(3q) colType m0 width mMin mMax tau0; narrow resonances
        out = ["NewGaugeBoson:ffbar2Wprime = on", f"{WPRIME}:m0 = {m!r}",
               f"{WPRIME}:oneChannel = 1 1.0 100 {X_SCALAR} {Y_SCALAR}",
               f"{X_SCALAR}:new = X+ X- 1 3 0 {mx!r} 0.01 {mx - 1!r} {mx + 1!r} 0.",
               f"{X_SCALAR}:isResonance = on", f"{X_SCALAR}:oneChannel = 1 1.0 100 2 -1",
               f"{Y_SCALAR}:new = Y void 1 0 0 {my!r} 0.01 {my - 1!r} {my + 1!r} 0.",
               f"{Y_SCALAR}:isResonance = on", f"{Y_SCALAR}:oneChannel = 1 1.0 100 1 -1"]
    else:
        raise KeyError(process)
    return out + [str(s) for s in params.get("settings") or []]


def visible_particles(prt):
    """The jet input of a nextBatch record: final-state particles without neutrinos, |eta| < 5, as an
    awkward record (px, py, pz, E, pdgId) per event."""
    import awkward as ak

    a = abs(prt.id)
    pt = np.hypot(prt.p.px, prt.p.py)
    eta = np.arcsinh(prt.p.pz / np.maximum(pt, 1e-12))
    keep = (prt.status > 0) & (a != 12) & (a != 14) & (a != 16) & (abs(eta) < PARTICLE_ETA_MAX) & (pt > 0)
    p = prt[keep]
    return ak.zip({"px": p.p.px, "py": p.p.py, "pz": p.p.pz, "E": p.p.e, "pdgId": p.id})


def cluster(parts, r: float, pt_min: float):
    """Anti-kT jets of `parts` (per event) above pt_min, in decreasing pT: (jets, constituent indices),
    jets as (px, py, pz, E) records [event][jet], the indices into each event's particles
    [event][jet][constituent], a jet's constituents in decreasing pT."""
    import awkward as ak
    import fastjet

    p4 = ak.zip({k: parts[k] for k in ("px", "py", "pz", "E")})
    cs = fastjet.ClusterSequence(p4, fastjet.JetDefinition(fastjet.antikt_algorithm, float(r)))
    jets = cs.inclusive_jets(min_pt=float(pt_min))
    cidx = cs.constituent_index(min_pt=float(pt_min))
    order = ak.argsort(np.hypot(jets.px, jets.py), axis=1, ascending=False)
    jets, cidx = jets[order], cidx[order]
    cpt = gather(np.hypot(parts.px, parts.py), cidx)
    cidx = cidx[ak.argsort(cpt, axis=2, ascending=False)]
    return jets, cidx


def gather(values, idx):
    """values [event][particle] taken at idx [event][jet][k] -> [event][jet][k]."""
    import awkward as ak

    flat = values[ak.flatten(idx, axis=2)]
    return ak.unflatten(flat, ak.flatten(ak.num(idx, axis=2)), axis=1)


def substructure(constituents, r: float, axes: str = TAU_AXES) -> dict:
    """Soft-drop mass and tau_1..tau_3 of jets given as lists of (px, py, pz, E) constituents
    [jet][constituent] (conventions: SUBSTRUCTURE; `axes`: a FastJet contrib axes definition, e.g.
    KT_Axes for plain exclusive-kT axes). A jet with one constituent has tau_N = 0."""
    import awkward as ak
    import fastjet

    n = len(constituents)
    if n == 0:
        z = np.zeros(0, np.float64)
        return {"msoftdrop": z, "tau1": z, "tau2": z, "tau3": z}
    cs = fastjet.ClusterSequence(constituents, fastjet.JetDefinition(fastjet.cambridge_algorithm, float(r)))
    sd = cs.exclusive_jets_softdrop_grooming(njets=1, beta=SOFTDROP_BETA, symmetry_cut=SOFTDROP_ZCUT,
                                             R0=float(r))
    tau = ak.to_numpy(cs.njettiness(measure_definition=TAU_MEASURE, axes_definition=axes,
                                    njets=(1, 2, 3), beta=TAU_BETA, R0=float(r))).reshape(n, 3)
    return {"msoftdrop": ak.to_numpy(sd.msoftdrop).astype(np.float64),
            "tau1": tau[:, 0], "tau2": tau[:, 1], "tau3": tau[:, 2]}


def _pt_eta_phi_m(px, py, pz, e):
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    phi = np.arctan2(py, px)
    m = np.sqrt(np.maximum(e * e - px * px - py * py - pz * pz, 0.0))
    return pt, eta, phi, m


def event_branches(prt, r: float, pt_min: float) -> dict:
    """The NanoAOD-style branches (FatJet, PFCands, FatJetPFCands) of a nextBatch record."""
    return particle_branches(visible_particles(prt), r, pt_min)


def particle_branches(parts, r: float, pt_min: float) -> dict:
    """The NanoAOD-style branches (FatJet, PFCands, FatJetPFCands) of events given as particles: an awkward
    record (px, py, pz, E, pdgId) per event, e.g. `visible_particles` or the LHC Olympics HDF5 events."""
    import awkward as ak

    jets, cidx = cluster(parts, r, pt_min)
    njet = ak.to_numpy(ak.num(jets)).astype(np.int64)
    ncons = ak.to_numpy(ak.flatten(ak.num(cidx, axis=2))).astype(np.int64)
    flat_jets = ak.flatten(jets)
    jpt, jeta, jphi, jm = _pt_eta_phi_m(*(ak.to_numpy(flat_jets[k]).astype(np.float64)
                                          for k in ("px", "py", "pz", "E")))
    cons = {k: gather(parts[k], cidx) for k in ("px", "py", "pz", "E", "pdgId")}
    sub = substructure(ak.zip({k: ak.flatten(cons[k], axis=1) for k in ("px", "py", "pz", "E")}), r)
    cpt, ceta, cphi, cm = _pt_eta_phi_m(*(ak.to_numpy(ak.flatten(cons[k], axis=None)).astype(np.float64)
                                          for k in ("px", "py", "pz", "E")))
    per_event = ak.to_numpy(ak.sum(ak.num(cidx, axis=2), axis=1)).astype(np.int64)  # candidates per event
    f32 = np.float32

    def jagged(values, counts):
        return ak.unflatten(values, counts)

    fat = ak.zip({"pt": jagged(jpt.astype(f32), njet), "eta": jagged(jeta.astype(f32), njet),
                  "phi": jagged(jphi.astype(f32), njet), "mass": jagged(jm.astype(f32), njet),
                  "msoftdrop": jagged(sub["msoftdrop"].astype(f32), njet),
                  "tau1": jagged(sub["tau1"].astype(f32), njet), "tau2": jagged(sub["tau2"].astype(f32), njet),
                  "tau3": jagged(sub["tau3"].astype(f32), njet),
                  "nConstituents": jagged(ncons.astype(np.int32), njet)})
    pf = ak.zip({"pt": jagged(cpt.astype(f32), per_event), "eta": jagged(ceta.astype(f32), per_event),
                 "phi": jagged(cphi.astype(f32), per_event), "mass": jagged(cm.astype(f32), per_event),
                 "pdgId": jagged(ak.to_numpy(ak.flatten(cons["pdgId"], axis=None)).astype(np.int32), per_event)})
    # the link table: jet index of each candidate, and its index in the event's PFCands (one to one here)
    jet_of = np.repeat(np.concatenate([np.arange(k, dtype=np.int32) for k in njet]) if njet.sum() else
                       np.zeros(0, np.int32), ncons)
    first = np.repeat(np.cumsum(per_event) - per_event, per_event)
    link = ak.zip({"jetIdx": jagged(jet_of.astype(np.int32), per_event),
                   "pFCandsIdx": jagged((np.arange(per_event.sum()) - first).astype(np.int32), per_event)})
    return {"FatJet": fat, "PFCands": pf, "FatJetPFCands": link}


class DijetSource:
    """One Pythia instance generating a dijet sample's events in order: `branches(n)` returns the next n
    events' branches (built in batches of at most BATCH_MAX: bounded memory)."""

    def __init__(self, process: str, params: dict, sqrt_s: float, seed: int, process_id: int):
        self.params = {**COMMON_DEFAULTS, **PROCESS_DEFAULTS[process], **(params or {})}
        self.process, self.process_id = process, process_id
        self.pythia = make_pythia(base_settings(sqrt_s, seed) + process_settings(process, self.params))
        self.n_tried = 0
        self.mu = float(self.params["pileup_mu"])
        self.minbias = None
        if self.mu > 0:
            self.minbias = make_pythia(base_settings(sqrt_s, (seed + PILEUP_SEED_OFFSET) % 900_000_000 + 1)
                                       + ["SoftQCD:inelastic = on"])
            self.rng = np.random.default_rng(seed)
            self._charge: dict = {}

    def overlay(self, parts):
        """`parts` (visible particles per event) with Poisson(mu) minimum-bias events' particles added."""
        import awkward as ak

        counts = self.rng.poisson(self.mu, len(parts))
        total = int(counts.sum())
        if total == 0:
            return parts
        pu = visible_particles(self.minbias.nextBatch(total).prt)
        if self.params["pileup_chs"]:  # charged pile-up removed (a perfect vertex association)
            ids = ak.to_numpy(ak.flatten(pu.pdgId))
            for i in np.unique(ids):
                if int(i) not in self._charge:
                    self._charge[int(i)] = self.minbias.particleData.charge(int(i))
            charged = np.array([self._charge[int(i)] != 0 for i in ids], bool) if len(ids) else np.zeros(0, bool)
            pu = pu[ak.unflatten(~charged, ak.num(pu))]
        cs = np.r_[0, np.cumsum(ak.to_numpy(ak.num(pu)))]  # particles of the first k pile-up events
        ends = np.cumsum(counts)
        per_hard = cs[ends] - cs[ends - counts]
        grouped = ak.unflatten(ak.flatten(pu), per_hard)
        return ak.concatenate([parts, grouped], axis=1)

    def branches(self, n: int) -> dict:
        import awkward as ak

        parts = []
        while n > 0:
            k = min(n, BATCH_MAX)
            prt = self.pythia.nextBatch(k).prt
            self.n_tried += len(prt)
            particles = visible_particles(prt)
            if self.minbias is not None:
                particles = self.overlay(particles)
            parts.append(particle_branches(particles, float(self.params["jet_r"]), float(self.params["jet_pt_min"])))
            n -= len(prt)
        out = {c: ak.concatenate([p[c] for p in parts]) for c in parts[0]} if len(parts) > 1 else parts[0]
        out["Truth_process"] = np.full(len(out["FatJet"]), self.process_id, np.int32)
        return out

    def cross_section(self) -> dict:
        """sigma_gen (pb), its error and the generated count (no filter: every event is kept)."""
        s, err = sigma_pb(self.pythia)
        return {"sigma_gen_pb": s, "sigma_err_pb": err, "n_tried": self.n_tried, "n_passed": self.n_tried}


class DijetMix:
    """A data-like mix (signal injected into QCD at a chosen cross section): each event's component drawn
    with probability weight / sum(weights), the components' events interleaved."""

    def __init__(self, components: list[dict], sqrt_s: float, seeds: list[int], process_ids: list[int]):
        self.weights = np.array([float(c["weight"]) for c in components])
        self.signal = [bool(c.get("is_signal")) for c in components]
        self.sources = [DijetSource(c["process"], c["params"], sqrt_s, sd, pid)
                        for c, sd, pid in zip(components, seeds, process_ids)]

    def branches(self, rng, n: int) -> dict:
        import awkward as ak

        order = rng.choice(len(self.sources), n, p=self.weights / self.weights.sum())
        pieces, rows = [], []
        for ci, src in enumerate(self.sources):
            r = np.flatnonzero(order == ci)
            if r.size:
                b = src.branches(r.size)
                b["Truth_isSignal"] = np.full(r.size, self.signal[ci])
                pieces.append(b)
                rows.append(r)
        inv = np.argsort(np.concatenate(rows), kind="stable")
        return {k: (np.concatenate([p[k] for p in pieces]) if isinstance(pieces[0][k], np.ndarray)
                    else ak.concatenate([p[k] for p in pieces]))[inv] for k in pieces[0]}

