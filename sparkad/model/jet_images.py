"""Jet images (seeds/004 sec. 2.2, seeds/002; HLF.md "Jet image") built on the fly from the constituent
columns that `sparkad extract --analysis dijet` stores (pT, Δη, Δφ to the jet axis, leading first).

An image is `n_pixels` × `n_pixels` bins over a `width` × `width` window in (Δη, Δφ) centred on the jet, each
pixel the summed pT of the constituents in it (rows: Δη, columns: Δφ). Options, as the papers describe:
`center="centroid"` re-centres on the pT-weighted centroid instead of the jet axis; `rotate=True` turns the
image so that its principal axis (pT-weighted second moments) is vertical; `normalize=True` divides each
image by its summed in-window pT. Constituents outside the window are left out (their pT fraction is
returned per jet, so the loss is measured, never silent). Numpy + numba only: what executors import.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

N_PIXELS, WIDTH = 32, 0.8


@nb.njit(cache=True)
def _fill(pt, deta, dphi, n_pixels, width, center, rotate, normalize, out, outside):
    half = 0.5 * width
    scale = n_pixels / width
    for r in range(pt.shape[0]):
        tot = 0.0
        ce, cp = 0.0, 0.0
        for j in range(pt.shape[1]):
            tot += pt[r, j]
            ce += pt[r, j] * deta[r, j]
            cp += pt[r, j] * dphi[r, j]
        if tot <= 0:
            continue
        if not center:
            ce, cp = 0.0, 0.0
        else:
            ce /= tot
            cp /= tot
        cos_a, sin_a = 1.0, 0.0
        if rotate:  # principal axis of the pT-weighted (deta, dphi) covariance -> vertical (the deta axis)
            see, spp, sep = 0.0, 0.0, 0.0
            for j in range(pt.shape[1]):
                e = deta[r, j] - ce
                p = dphi[r, j] - cp
                see += pt[r, j] * e * e
                spp += pt[r, j] * p * p
                sep += pt[r, j] * e * p
            theta = 0.5 * math.atan2(2.0 * sep, see - spp)  # angle of the principal axis from the deta axis
            cos_a, sin_a = math.cos(theta), math.sin(theta)
        inside = 0.0
        for j in range(pt.shape[1]):
            w = pt[r, j]
            if w <= 0:
                continue
            e = deta[r, j] - ce
            p = dphi[r, j] - cp
            if rotate:
                e, p = cos_a * e + sin_a * p, -sin_a * e + cos_a * p
            ie = math.floor((e + half) * scale)
            ip = math.floor((p + half) * scale)
            if ie < 0 or ie >= n_pixels or ip < 0 or ip >= n_pixels:
                continue
            out[r, ie, ip] += w
            inside += w
        outside[r] = 1.0 - inside / tot
        if normalize and inside > 0:
            for a in range(n_pixels):
                for b in range(n_pixels):
                    out[r, a, b] /= inside


def jet_images(pt, deta, dphi, n_pixels: int = N_PIXELS, width: float = WIDTH, center: str = "axis",
               rotate: bool = False, normalize: bool = True, power: float = 1.0):
    """(images (n, n_pixels, n_pixels) float32, pT fraction outside the window (n,) float64) of jets given
    as (n, k) arrays of their constituents' pT, Δη, Δφ (zero pT = padding). ``power`` < 1 compresses the
    pixel intensities (pixel^power, after the normalisation): the core pixel weighs less in a squared loss
    against the soft radiation around it."""
    if center not in ("axis", "centroid"):
        raise ValueError(f"center must be 'axis' or 'centroid', got {center!r}")
    if not (isinstance(power, (int, float)) and 0 < power <= 1):
        raise ValueError(f"power must lie in (0, 1], got {power!r}")
    pt, deta, dphi = (np.ascontiguousarray(np.asarray(x, np.float64)) for x in (pt, deta, dphi))
    if pt.ndim != 2 or pt.shape != deta.shape or pt.shape != dphi.shape:
        raise ValueError(f"constituent arrays must share one (jets, constituents) shape, got {pt.shape}, "
                         f"{deta.shape}, {dphi.shape}")
    out = np.zeros((pt.shape[0], int(n_pixels), int(n_pixels)), np.float64)
    outside = np.zeros(pt.shape[0], np.float64)
    _fill(pt, deta, dphi, int(n_pixels), float(width), center == "centroid", bool(rotate), bool(normalize), out,
          outside)
    if power != 1:
        np.power(out, float(power), out=out)
    return out.astype(np.float32), outside


def constituents_of(table, jet: int):
    """The (pt, deta, dphi) (n, k) arrays of jet 1 or 2 from an extracted dijet table (pyarrow or pandas)."""
    cols = [f"j{jet}_c_{q}" for q in ("pt", "deta", "dphi")]
    if hasattr(table, "column"):  # pyarrow: fixed-size lists flatten without a copy per row
        out = []
        for c in cols:
            col = table.column(c)
            if hasattr(col, "combine_chunks"):  # a Table's ChunkedArray; a RecordBatch holds one Array
                col = col.combine_chunks()
            size = getattr(col.type, "list_size", -1)  # fixed-size lists know their width, even with no row
            out.append(col.flatten().to_numpy(zero_copy_only=False).reshape(table.num_rows, size if size > 0 else -1))
        return tuple(out)
    return tuple(np.stack(table[c].to_numpy()) if len(table) else np.zeros((0, 0)) for c in cols)
