"""Pythia 8 engine of the generator: hard process, shower, hadronisation and decays by Pythia
(`pythia8mc`), anti-kT jets by FastJet, then the same truth `Batch` the parametric processes fill, so the
detector emulation (detector.py), run structure, faults and the ROOT writer are reused unchanged.

Steps per batch of events (`PythiaSource.truth`):
1. `Pythia.nextBatch` (the particle record as awkward arrays; no per-particle Python);
2. the generator-level lepton filter (`lepton_filter`): events without a final-state e or mu with
   pT > lepton_pt_min and |eta| < lepton_eta_max are dropped before anything else and counted, so the
   written cross section is sigma_gen x filter efficiency;
3. particle roles (`classify`, a numba loop over the flat record): prompt e/mu (no hadron among the
   ancestors), prompt hadronic taus (their visible momentum; their decay products leave the jet input),
   B and C hadrons, invisible particles;
4. anti-kT jets (R = `jet_r`: 0.5 at 7/8 TeV, 0.4 at 13 TeV by default) on the visible final-state particles with
   |eta| < 5 minus the prompt leptons and the prompt taus' products (`cluster_jets`);
5. the truth slots (`fill_batch`): jets with b/c truth from a B (C) hadron within dR < 0.3 of the axis
   (pdg 5 / 4, else 21), e/mu above 3 GeV with the particle-level dR < 0.3 cone sums of the visible
   particles around them (charged; neutral hadrons and photons above 0.5 GeV) in `env` / `env3`
   (non-prompt ones linked to the nearest jet), hadronic taus (pdg +-15,
   visible momentum), one invisible slot (pdg 12) carrying the sum of all neutrinos, and GenPart = the
   hard-process record (Pythia status 22/23 -> GenPart status 3); the PF candidate multiplicities of the
   final-state particles (`pf_counts`; the detector adds pile-up).

Nothing here is imported at `sparkad` import time; pythia8mc and fastjet are imported when a source is made.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from sparkad.generate.record import Batch, allocate

PYTHIA_SEED_MAX = 900_000_000  # Pythia's Random:seed range is [0, 900000000]; 0 means "from the clock"
N_JETS, N_LEPTONS, N_TAUS = 14, 6, 2
N_SLOTS = N_JETS + N_LEPTONS + N_TAUS + 1
N_GEN = 12
JET_PT_MIN = 10.0          # generator-level jets kept (GeV); the detector cuts at jet_pt_min after smearing
JET_ETA_MAX = 5.0          # jet input particles
LEPTON_PT_MIN = 3.0        # e/mu truth slots
HADRON_PT_MIN = 5.0        # B/C hadrons used for the jet flavour
MAX_TRIED_WITHOUT_PASS = 20_000  # a filter that passes nothing in this many events is an error
BATCH_MAX = 1000           # Pythia events per nextBatch call (the awkward record of 1000 ttbar events: ~0.1 GB)
FLAVOUR_DR = 0.3
LEPTON_JET_DR = 0.4        # a non-prompt lepton's jet: the nearest within this dR
ISO_DR = 0.3
ISO_NEUTRAL_PT = 0.5       # neutral hadrons and photons enter the isolation sums above this pT (GeV)

# process -> (Pythia settings, defaults of its parameters)
PROCESS_DEFAULTS = {
    "wjets": {"parton_pt_min": 0.0},
    "dyjets": {"m_min": 50.0, "m_max": 0.0, "parton_pt_min": 0.0},
    "ttbar": {},
}
COMMON_DEFAULTS = {"lepton_pt_min": 0.0, "lepton_eta_max": 2.5, "jet_r": None, "settings": []}  # jet_r: default_jet_r


def default_jet_r(sqrt_s: float) -> float:
    """The anti-kT radius of the era: 0.5 for the 7/8 TeV (2011-2012) layout, 0.4 from 13 TeV on."""
    return 0.5 if float(sqrt_s) < 10_000 else 0.4


def process_settings(process: str, params: dict) -> list[str]:
    """The Pythia settings of a process (8/13 TeV SM): W -> l nu and Z/gamma* -> l l (l = e, mu, tau,
    `m_min` < m_ll < `m_max` when m_max > 0), ttbar (gg and qqbar, all decays), plus the sample's own
    `settings` strings.

    `parton_pt_min` > 0 (W, Z/gamma*): the jet-biased sample, the boson produced with a hard parton
    (q qbar -> V g, q g -> V q) at pT-hat > parton_pt_min instead of alone (the shower's first emission
    is matrix-element corrected either way, so this is the inclusive process restricted to a hard first
    emission): the way to populate the multi-jet tail cheaply; its cross section is that of the cut."""
    ptmin = float(params.get("parton_pt_min") or 0.0)
    if process == "wjets":
        out = (["WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on",
                f"PhaseSpace:pTHatMin = {ptmin!r}"] if ptmin > 0 else ["WeakSingleBoson:ffbar2W = on"])
        out += ["24:onMode = off", "24:onIfAny = 11 13 15"]
    elif process == "dyjets":
        out = ["23:onMode = off", "23:onIfAny = 11 13 15"]
        if ptmin > 0:  # the gamma*/Z mass window is the particle's mass range in a 2 -> 2 process
            out = ["WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
                   f"PhaseSpace:pTHatMin = {ptmin!r}", f"23:mMin = {float(params['m_min'])!r}"] + out
            if float(params["m_max"]) > 0:
                out.append(f"23:mMax = {float(params['m_max'])!r}")
        else:
            out = ["WeakSingleBoson:ffbar2gmZ = on"] + out + [f"PhaseSpace:mHatMin = {float(params['m_min'])!r}"]
            if float(params["m_max"]) > 0:
                out.append(f"PhaseSpace:mHatMax = {float(params['m_max'])!r}")
    elif process == "ttbar":
        out = ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"]
    else:
        raise KeyError(process)
    return out + [str(s) for s in params.get("settings") or []]


def base_settings(sqrt_s: float, seed: int) -> list[str]:
    """Beams, the random seed (1 ... 900000000) and quiet output."""
    return [f"Beams:eCM = {float(sqrt_s)!r}", "Random:setSeed = on", f"Random:seed = {int(seed)}",
            "Next:numberCount = 0", "Next:numberShowInfo = 0", "Next:numberShowProcess = 0",
            "Next:numberShowEvent = 0", "Init:showProcesses = off", "Init:showMultipartonInteractions = off",
            "Init:showChangedSettings = off", "Init:showChangedParticleData = off", "Print:quiet = on"]


def pythia_seed(seed_sequence: np.random.SeedSequence) -> int:
    """A Pythia Random:seed in [1, 900000000] from a numpy SeedSequence."""
    return int(seed_sequence.generate_state(1, np.uint64)[0] % PYTHIA_SEED_MAX) + 1


def make_pythia(settings: list[str], init: bool = True):
    """A Pythia instance with `settings` read (and initialised). A setting Pythia refuses raises
    ValueError naming it."""
    import pythia8mc

    p = pythia8mc.Pythia("", False)
    for s in settings:
        if not p.readString(s):
            raise ValueError(f"Pythia does not accept the setting {s!r}")
    if init and not p.init():
        raise ValueError("Pythia initialisation failed (settings: " + "; ".join(settings) + ")")
    return p


def check_settings(settings: list[str]) -> None:
    """Raise ValueError naming the first setting Pythia refuses (no initialisation)."""
    make_pythia(settings, init=False)


def sigma_pb(pythia) -> tuple[float, float]:
    """Pythia's estimate of the generated cross section and its error, in pb (sigmaGen is in mb)."""
    info = pythia.infoPython()
    return float(info.sigmaGen()) * 1e9, float(info.sigmaErr()) * 1e9


# ------------------------------------------------------------------------------ filter and flattening

def lepton_filter(prt, pt_min: float, eta_max: float) -> np.ndarray:
    """Events (of a nextBatch record) with a final-state e or mu of pT > pt_min and |eta| < eta_max."""
    import awkward as ak

    a = abs(prt.id)
    px, py, pz = prt.p.px, prt.p.py, prt.p.pz
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
    ok = (prt.status > 0) & ((a == 11) | (a == 13)) & (pt > pt_min) & (abs(eta) < eta_max)
    return ak.to_numpy(ak.any(ok, axis=1))


def flatten_record(prt) -> dict:
    """Flat numpy columns of the particle record plus per-event offsets (indices stay event-local)."""
    import awkward as ak

    counts = ak.to_numpy(ak.num(prt.id)).astype(np.int64)
    off = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=off[1:])

    def col(x, dt):
        return np.ascontiguousarray(ak.to_numpy(ak.flatten(x)), dtype=dt)

    return {"offsets": off, "id": col(prt.id, np.int32), "status": col(prt.status, np.int32),
            "mother1": col(prt.mother1, np.int32), "daughter1": col(prt.daughter1, np.int32),
            "daughter2": col(prt.daughter2, np.int32), "e": col(prt.p.e, np.float64),
            "px": col(prt.p.px, np.float64), "py": col(prt.p.py, np.float64), "pz": col(prt.p.pz, np.float64)}


# ------------------------------------------------------------------------------ particle roles

ROLE_NONE, ROLE_JET, ROLE_LEPTON, ROLE_INVISIBLE, ROLE_TAU_PRODUCT = 0, 1, 2, 3, 4


@njit(cache=True, inline="always")
def _is_hadron(a):
    if a < 100 or a % 10 == 0:
        return False
    if 1000 <= a < 10000 and (a // 10) % 10 == 0:
        return False  # diquark
    return a < 1000000 or a >= 9000000


@njit(cache=True, inline="always")
def _heavy_flavour(a):
    """5 for a B hadron, 4 for a charm hadron, else 0."""
    if not _is_hadron(a):
        return 0
    q1 = (a // 1000) % 10
    q2 = (a // 100) % 10
    if q1 == 5 or q2 == 5:
        return 5
    if q1 == 4 or q2 == 4:
        return 4
    return 0


@njit(cache=True)
def classify(off, pid, status, mother1, daughter1, daughter2, px, py, pz, e):
    """Per particle: role (ROLE_*), prompt flag of final e/mu, and the hard-process ancestor (event-local
    index of the nearest |status| 23 ancestor of the same id, -1) of prompt leptons; per particle also the
    index of the prompt hadronic tau it descends from (taus themselves: their own index if prompt and
    hadronic, else -1) and heavy flavour (5/4/0) of the hadrons."""
    n = off.shape[0] - 1
    N = pid.shape[0]
    role = np.zeros(N, np.int8)
    prompt = np.zeros(N, np.bool_)
    hard = np.full(N, -1, np.int32)
    tau_of = np.full(N, -1, np.int32)
    flav = np.zeros(N, np.int8)
    for i in range(n):
        b = off[i]
        m = off[i + 1] - b
        # prompt hadronic taus: last copy, no e/mu daughter, no hadron among the ancestors
        for k in range(m):
            a = abs(pid[b + k])
            flav[b + k] = _heavy_flavour(a)
            if a != 15:
                continue
            d1, d2 = daughter1[b + k], daughter2[b + k]
            last, lep = True, False
            if d1 > 0:
                for d in range(d1, max(d2, d1) + 1):
                    ad = abs(pid[b + d])
                    if ad == 15:
                        last = False
                    if ad == 11 or ad == 13:
                        lep = True
            if not last or lep or d1 <= 0:
                continue
            j = mother1[b + k]
            from_hadron = False
            while j > 2:  # entries 1 and 2 are the beam protons
                if _is_hadron(abs(pid[b + j])):
                    from_hadron = True
                    break
                j = mother1[b + j]
            if not from_hadron:
                tau_of[b + k] = k
        for k in range(m):
            if status[b + k] <= 0:
                continue
            a = abs(pid[b + k])
            if a == 12 or a == 14 or a == 16:
                role[b + k] = ROLE_INVISIBLE
                continue
            # ancestry: a prompt tau above, a hadron above, the hard-process copy
            j = mother1[b + k]
            from_hadron = False
            tau = -1
            hk = k if abs(status[b + k]) == 23 else -1  # a lepton without FSR is its own hard-process copy
            while j > 2:
                aj = abs(pid[b + j])
                if tau < 0 and tau_of[b + j] == j:
                    tau = j
                if hk < 0 and aj == a and abs(status[b + j]) == 23:
                    hk = j
                if _is_hadron(aj):
                    from_hadron = True
                j = mother1[b + j]
            if tau >= 0:
                role[b + k] = ROLE_TAU_PRODUCT
                tau_of[b + k] = tau
                continue
            if (a == 11 or a == 13) and not from_hadron:
                role[b + k] = ROLE_LEPTON
                prompt[b + k] = True
                hard[b + k] = hk
                continue
            pt = math.sqrt(px[b + k] ** 2 + py[b + k] ** 2)
            if pt > 0:
                pa = math.sqrt(pt * pt + pz[b + k] ** 2)
                eta = 0.5 * math.log((pa + pz[b + k]) / max(pa - pz[b + k], 1e-300))
                if abs(eta) < JET_ETA_MAX:
                    role[b + k] = ROLE_JET
    return role, prompt, hard, tau_of, flav


def cluster_jets(rec: dict, role: np.ndarray, r: float, pt_min: float = JET_PT_MIN):
    """Anti-kT jets (radius r) of the ROLE_JET particles: (counts, px, py, pz, e) flat, each event's jets
    in decreasing pT."""
    import awkward as ak
    import fastjet
    import fastjet._swig

    off = rec["offsets"]
    sel = role == ROLE_JET
    ev = np.repeat(np.arange(len(off) - 1), np.diff(off))
    counts = np.bincount(ev[sel], minlength=len(off) - 1)
    parts = ak.unflatten(ak.zip({"px": rec["px"][sel], "py": rec["py"][sel], "pz": rec["pz"][sel],
                                 "E": rec["e"][sel]}, with_name="Momentum4D"), counts)
    fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)  # no banner on stdout
    jets = fastjet.ClusterSequence(parts, fastjet.JetDefinition(fastjet.antikt_algorithm, float(r))).inclusive_jets(pt_min)
    jpx, jpy = jets.px, jets.py
    order = ak.argsort(jpx * jpx + jpy * jpy, axis=1, ascending=False)
    jets = jets[order]
    jc = ak.to_numpy(ak.num(jets.px)).astype(np.int64)

    def col(x):
        return np.ascontiguousarray(ak.to_numpy(ak.flatten(x)), dtype=np.float64)

    return jc, col(jets.px), col(jets.py), col(jets.pz), col(jets.E)


# ------------------------------------------------------------------------------ truth slots

@njit(cache=True, inline="always")
def _eta_phi(px, py, pz):
    pt = math.sqrt(px * px + py * py)
    if pt <= 0:
        return 0.0, 0.0
    return math.asinh(pz / pt), math.atan2(py, px)


@njit(cache=True, inline="always")
def _dr(eta1, phi1, eta2, phi2):
    d = phi1 - phi2
    while d > math.pi:
        d -= 2 * math.pi
    while d < -math.pi:
        d += 2 * math.pi
    return math.sqrt((eta1 - eta2) ** 2 + d * d)


PF_CHARGED = (211, 321, 2212, 3112, 3222, 3312, 3334)
PF_NEUTRAL = (130, 310, 2112, 3122, 3322)
PF_CH_PT, PF_CH_ETA = 0.3, 2.5          # tracks
PF_NEU_PT, PF_PHO_PT, PF_CALO_ETA = 1.0, 0.5, 3.0  # HCAL / ECAL clusters


@njit(cache=True)
def pf_counts(pid, status, px, py, pz):
    """PF candidate multiplicities of one event from its final-state particles: charged hadrons (pT > 0.3
    GeV, |eta| < 2.5), neutral hadrons (pT > 1 GeV, |eta| < 3), photons (pT > 0.5 GeV, |eta| < 3)."""
    nch, nneu, npho = 0, 0, 0
    for k in range(pid.shape[0]):
        if status[k] <= 0:
            continue
        a = abs(pid[k])
        pt = math.sqrt(px[k] * px[k] + py[k] * py[k])
        if pt <= 0:
            continue
        eta = abs(math.asinh(pz[k] / pt))
        if a == 22:
            npho += pt > PF_PHO_PT and eta < PF_CALO_ETA
        elif a in PF_CHARGED:
            nch += pt > PF_CH_PT and eta < PF_CH_ETA
        elif a in PF_NEUTRAL:
            nneu += pt > PF_NEU_PT and eta < PF_CALO_ETA
    return nch, nneu, npho


@njit(cache=True)
def fill_batch(off, pid, status, daughter1, daughter2, px, py, pz, e, role, prompt, hard, tau_of, flav,
               joff, jpx, jpy, jpz, je, n_jets, n_leptons, n_taus,
               p4, pdg, valid, env, jet_link, gen_link, gp4, gpdg, gstatus, gvalid, pf, env3):
    """Fill the truth slots of every event (layout: jets, leptons, taus, one invisible slot) and the
    particle-level PF multiplicities (`pf_counts`)."""
    n = off.shape[0] - 1
    G = gvalid.shape[1]
    s_lep = n_jets
    s_tau = n_jets + n_leptons
    s_inv = n_jets + n_leptons + n_taus
    jeta = np.empty(n_jets)
    jphi = np.empty(n_jets)
    mmax = 1
    for i in range(n):
        mmax = max(mmax, off[i + 1] - off[i])
    lk = np.empty(mmax, np.int64)
    lpt = np.empty(mmax)
    gslot = np.empty(mmax, np.int32)
    for i in range(n):
        b = off[i]
        m = off[i + 1] - b
        # GenPart: the hard process (status 22/23) in record order
        g = 0
        for k in range(m):
            gslot[k] = -1
            st = abs(status[b + k])
            if (st == 22 or st == 23) and g < G:
                gp4[i, g, 0] = e[b + k]
                gp4[i, g, 1] = px[b + k]
                gp4[i, g, 2] = py[b + k]
                gp4[i, g, 3] = pz[b + k]
                gpdg[i, g] = pid[b + k]
                gstatus[i, g] = 3
                gvalid[i, g] = True
                gslot[k] = g
                g += 1
        # jets, flavour from heavy hadrons within FLAVOUR_DR
        jb = joff[i]
        nj = min(joff[i + 1] - jb, n_jets)
        for s in range(nj):
            q = jb + s
            p4[i, s, 0] = je[q]
            p4[i, s, 1] = jpx[q]
            p4[i, s, 2] = jpy[q]
            p4[i, s, 3] = jpz[q]
            valid[i, s] = True
            jeta[s], jphi[s] = _eta_phi(jpx[q], jpy[q], jpz[q])
            pdg[i, s] = 21
        for k in range(m):
            f = flav[b + k]
            if f == 0:
                continue
            hpt = math.sqrt(px[b + k] ** 2 + py[b + k] ** 2)
            if hpt < HADRON_PT_MIN:
                continue
            heta, hphi = _eta_phi(px[b + k], py[b + k], pz[b + k])
            for s in range(nj):
                if _dr(heta, hphi, jeta[s], jphi[s]) < FLAVOUR_DR and pdg[i, s] != 5:
                    pdg[i, s] = f
        # e/mu above the slot threshold, in decreasing pT
        nl = 0
        for k in range(m):
            a = abs(pid[b + k])
            if status[b + k] > 0 and (a == 11 or a == 13):
                pt = math.sqrt(px[b + k] ** 2 + py[b + k] ** 2)
                if pt > LEPTON_PT_MIN:
                    lk[nl] = k
                    lpt[nl] = pt
                    nl += 1
        for x in range(1, nl):  # insertion sort by descending pT
            vk, vp = lk[x], lpt[x]
            y = x - 1
            while y >= 0 and lpt[y] < vp:
                lk[y + 1] = lk[y]
                lpt[y + 1] = lpt[y]
                y -= 1
            lk[y + 1] = vk
            lpt[y + 1] = vp
        for r in range(min(nl, n_leptons)):
            k = lk[r]
            s = s_lep + r
            p4[i, s, 0] = e[b + k]
            p4[i, s, 1] = px[b + k]
            p4[i, s, 2] = py[b + k]
            p4[i, s, 3] = pz[b + k]
            pdg[i, s] = pid[b + k]
            valid[i, s] = True
            leta, lphi = _eta_phi(px[b + k], py[b + k], pz[b + k])
            cch, cneu, cpho = 0.0, 0.0, 0.0
            for q in range(m):
                if q == k or status[b + q] <= 0 or role[b + q] == ROLE_INVISIBLE:
                    continue
                qpt = math.sqrt(px[b + q] ** 2 + py[b + q] ** 2)
                if qpt <= 0:
                    continue
                qeta, qphi = _eta_phi(px[b + q], py[b + q], pz[b + q])
                if _dr(leta, lphi, qeta, qphi) < ISO_DR:
                    aq = abs(pid[b + q])
                    if aq == 22:
                        cpho += qpt if qpt > ISO_NEUTRAL_PT else 0.0
                    elif aq == 11 or aq == 13 or aq in PF_CHARGED:
                        cch += qpt
                    else:
                        cneu += qpt if qpt > ISO_NEUTRAL_PT else 0.0
            env[i, s] = cch + cneu + cpho
            env3[i, s, 0] = cch
            env3[i, s, 1] = cneu
            env3[i, s, 2] = cpho
            if prompt[b + k]:
                h = hard[b + k]
                gen_link[i, s] = gslot[h] if h >= 0 else -1
            else:
                best, bj = LEPTON_JET_DR, -1
                for t in range(nj):
                    d = _dr(leta, lphi, jeta[t], jphi[t])
                    if d < best:
                        best, bj = d, t
                jet_link[i, s] = bj
        # prompt hadronic taus: visible momentum = tau minus its direct neutrinos
        nt = 0
        for k in range(m):
            if abs(pid[b + k]) != 15 or tau_of[b + k] != k or nt >= n_taus:
                continue
            ve, vx, vy, vz = e[b + k], px[b + k], py[b + k], pz[b + k]
            for d in range(daughter1[b + k], max(daughter2[b + k], daughter1[b + k]) + 1):
                ad = abs(pid[b + d])
                if ad == 12 or ad == 14 or ad == 16:
                    ve -= e[b + d]
                    vx -= px[b + d]
                    vy -= py[b + d]
                    vz -= pz[b + d]
            s = s_tau + nt
            p4[i, s, 0] = ve
            p4[i, s, 1] = vx
            p4[i, s, 2] = vy
            p4[i, s, 3] = vz
            pdg[i, s] = pid[b + k]
            valid[i, s] = True
            nt += 1
        pf[i, 0], pf[i, 1], pf[i, 2] = pf_counts(pid[b:b + m], status[b:b + m], px[b:b + m], py[b:b + m],
                                                 pz[b:b + m])
        # all neutrinos as one invisible slot
        ie, ix, iy, iz = 0.0, 0.0, 0.0, 0.0
        for k in range(m):
            if role[b + k] == ROLE_INVISIBLE:
                ie += e[b + k]
                ix += px[b + k]
                iy += py[b + k]
                iz += pz[b + k]
        if ie > 0:
            p4[i, s_inv, 0] = ie
            p4[i, s_inv, 1] = ix
            p4[i, s_inv, 2] = iy
            p4[i, s_inv, 3] = iz
            pdg[i, s_inv] = 12
            valid[i, s_inv] = True


def truth_batch(rec: dict, jet_r: float, process_id: int) -> Batch:
    """The truth Batch of a flattened Pythia record (see the module docstring)."""
    n = len(rec["offsets"]) - 1
    role, prompt, hard, tau_of, flav = classify(rec["offsets"], rec["id"], rec["status"], rec["mother1"],
                                               rec["daughter1"], rec["daughter2"], rec["px"], rec["py"],
                                               rec["pz"], rec["e"])
    jc, jpx, jpy, jpz, je = cluster_jets(rec, role, jet_r)
    joff = np.zeros(n + 1, np.int64)
    np.cumsum(jc, out=joff[1:])
    batch = allocate(n, N_SLOTS, N_GEN, env_parts=True)
    fill_batch(rec["offsets"], rec["id"], rec["status"], rec["daughter1"], rec["daughter2"], rec["px"],
               rec["py"], rec["pz"], rec["e"], role, prompt, hard, tau_of, flav, joff, jpx, jpy, jpz, je,
               N_JETS, N_LEPTONS, N_TAUS, *batch.arrays, batch.pf, batch.env3)
    batch.process[:] = process_id
    return batch


class PythiaSource:
    """One Pythia instance generating a sample's events in order: `truth(n)` returns the next n events
    that pass the generator-level filter as a truth Batch; `n_tried` / `n_passed` count every generated
    event and every one passing the filter (the events generated past the n-th passing one in the
    last round are counted too and then dropped)."""

    def __init__(self, process: str, params: dict, sqrt_s: float, seed: int, process_id: int):
        self.params = {**COMMON_DEFAULTS, **PROCESS_DEFAULTS[process], **(params or {})}
        if self.params["jet_r"] is None:
            self.params["jet_r"] = default_jet_r(sqrt_s)
        self.process, self.process_id = process, process_id
        self.max_tried_without_pass = MAX_TRIED_WITHOUT_PASS
        self.pythia = make_pythia(base_settings(sqrt_s, seed) + process_settings(process, self.params))
        self.n_tried = 0
        self.n_passed = 0

    @property
    def filter_eff(self) -> float:
        return self.n_passed / self.n_tried if self.n_tried else 1.0

    def _pieces(self, n: int):
        """The next n events passing the filter, as awkward records of at most BATCH_MAX events each."""
        pt_min = float(self.params["lepton_pt_min"])
        eta_max = float(self.params["lepton_eta_max"])
        have = 0
        while have < n:
            need = n - have
            # a generous estimate from the efficiency so far (the first round probes with the need; while
            # nothing passed, twice what was tried so far)
            if self.n_passed:
                k = int(math.ceil(need / self.filter_eff * 1.1)) + 5
            else:
                k = max(need, 2 * self.n_tried)
            prt = self.pythia.nextBatch(min(max(k, 1), BATCH_MAX)).prt
            self.n_tried += len(prt)
            if pt_min > 0:
                keep = np.flatnonzero(lepton_filter(prt, pt_min, eta_max))
                self.n_passed += keep.size
                prt = prt[keep[:need]]
            else:
                self.n_passed += len(prt)
                prt = prt[:need]
            if self.n_passed == 0 and self.n_tried >= self.max_tried_without_pass:
                raise ValueError(f"{self.process}: the generator-level lepton filter (lepton_pt_min {pt_min:g} GeV, "
                                 f"lepton_eta_max {eta_max:g}) passed none of {self.n_tried} generated events")
            if len(prt):
                have += len(prt)
                yield prt

    def truth(self, n: int) -> Batch:
        """The next n events passing the filter as a truth Batch (built piece by piece: bounded memory)."""
        batch = allocate(n, N_SLOTS, N_GEN, env_parts=True)
        a = 0
        for prt in self._pieces(n):
            part = truth_batch(flatten_record(prt), float(self.params["jet_r"]), self.process_id)
            put_rows(batch, slice(a, a + part.n), part)
            a += part.n
        return batch

    def cross_section(self) -> dict:
        """sigma_gen (pb), its error, and the filter counts of the events generated so far."""
        s, err = sigma_pb(self.pythia)
        return {"sigma_gen_pb": s, "sigma_err_pb": err, "n_tried": self.n_tried, "n_passed": self.n_passed}


def put_rows(batch: Batch, rows, part: Batch) -> None:
    """Copy the events of `part` into the rows `rows` (indices or a slice) of `batch` (same shapes)."""
    for name in ("p4", "pdg", "valid", "env", "jet_link", "gen_link", "gp4", "gpdg", "gstatus", "gvalid",
                 "process", "is_signal", "pf", "env3"):
        getattr(batch, name)[rows] = getattr(part, name)


class PythiaMix:
    """A data-like mix of Pythia samples: one PythiaSource per component; `truth(rng, n)` draws each
    event's component with probability weight / sum(weights) and interleaves the components' events."""

    def __init__(self, components: list[dict], sqrt_s: float, seeds: list[int], process_ids: list[int]):
        self.weights = np.array([float(c["weight"]) for c in components])
        self.sources = [PythiaSource(c["process"], c["params"], sqrt_s, sd, pid)
                        for c, sd, pid in zip(components, seeds, process_ids)]

    def truth(self, rng, n: int) -> Batch:
        order = rng.choice(len(self.sources), n, p=self.weights / self.weights.sum())
        batch = allocate(n, N_SLOTS, N_GEN, env_parts=True)
        for ci, src in enumerate(self.sources):
            rows = np.flatnonzero(order == ci)
            if rows.size:
                put_rows(batch, rows, src.truth(rows.size))
        return batch
