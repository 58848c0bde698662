"""Jet images from the stored constituents (sparkad.model.jet_images) against numpy's histogram2d and by hand."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from sparkad.core.parquet_io import hlf_table
from sparkad.model.jet_images import constituents_of, jet_images


def test_single_constituent_lands_in_its_pixel():
    img, out = jet_images(np.array([[50.0, 0.0]]), np.array([[0.01, 0.0]]), np.array([[-0.02, 0.0]]))
    assert img.shape == (1, 32, 32) and out[0] == 0
    # pixels of 0.025 over [-0.4, 0.4): deta 0.01 -> row 16, dphi -0.02 -> column 15
    assert img[0, 16, 15] == 1.0 and img.sum() == 1.0


def test_matches_histogram2d_and_reports_what_falls_outside():
    rng = np.random.default_rng(2)
    pt = rng.exponential(10, (50, 100))
    pt[:, 80:] = 0  # padding
    deta, dphi = rng.normal(0, 0.25, (2, 50, 100))
    img, outside = jet_images(pt, deta, dphi, normalize=False)
    for r in range(50):
        h, _, _ = np.histogram2d(deta[r], dphi[r], bins=32, range=[[-0.4, 0.4], [-0.4, 0.4]], weights=pt[r])
        np.testing.assert_allclose(img[r], h, rtol=1e-5, atol=1e-4)
        ok = (np.abs(deta[r]) < 0.4) & (np.abs(dphi[r]) < 0.4)
        assert outside[r] == pytest.approx(1 - pt[r][ok].sum() / pt[r].sum(), abs=1e-9)
    norm, _ = jet_images(pt, deta, dphi)
    np.testing.assert_allclose(norm.sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_centroid_and_rotation():
    # two prongs of equal pT side by side in dphi, off the axis by +0.1 in deta
    pt = np.array([[30.0, 30.0]])
    deta = np.array([[0.1, 0.1]])
    dphi = np.array([[-0.1, 0.1]])
    img, _ = jet_images(pt, deta, dphi, center="centroid")
    rows, cols = np.nonzero(img[0])
    assert list(rows) == [16, 16] and list(cols) == [12, 20]  # re-centred on deta = 0.1
    rot, _ = jet_images(pt, deta, dphi, center="centroid", rotate=True)
    rows, cols = np.nonzero(rot[0])
    assert len(set(cols)) == 1 and sorted(rows) == [12, 20]  # the prong axis is now vertical (along deta)
    with pytest.raises(ValueError, match="center"):
        jet_images(pt, deta, dphi, center="middle")
    with pytest.raises(ValueError, match="one .jets, constituents. shape"):
        jet_images(pt, deta, dphi[:, :1])


def test_constituents_from_an_extracted_table():
    rng = np.random.default_rng(0)
    c = {f"j1_c_{q}": rng.normal(size=(4, 100)).astype(np.float32) for q in ("pt", "deta", "dphi")}
    t = hlf_table("ds", "x", {k: np.arange(4) for k in ("run", "luminosityBlock", "event")}, np.ones(4),
                  {"mjj": np.ones(4), **c}, {})
    assert isinstance(t.column("j1_c_pt").type, pa.FixedSizeListType)
    for got, q in zip(constituents_of(t, 1), ("pt", "deta", "dphi")):
        np.testing.assert_array_equal(got, c[f"j1_c_{q}"])
    for got, q in zip(constituents_of(t.to_pandas(), 1), ("pt", "deta", "dphi")):
        np.testing.assert_array_equal(got, c[f"j1_c_{q}"])


def test_intensity_power_and_record_batches():
    rng = np.random.default_rng(4)
    pt, deta, dphi = rng.exponential(10, (5, 30)), rng.normal(0, 0.15, (5, 30)), rng.normal(0, 0.15, (5, 30))
    lin, _ = jet_images(pt, deta, dphi)
    root, _ = jet_images(pt, deta, dphi, power=0.5)
    np.testing.assert_allclose(root, np.sqrt(lin), rtol=1e-6)  # normalised first, then compressed
    assert np.all(root.sum(axis=(1, 2)) > 1)
    with pytest.raises(ValueError, match="power must lie in"):
        jet_images(pt, deta, dphi, power=0)
    # a RecordBatch (what a scoring task reads) and an empty one give the constituents too
    t = pa.table({f"j1_c_{q}": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), 30)
                  for q, v in (("pt", pt), ("deta", deta), ("dphi", dphi))})
    batch = t.to_batches()[0]
    for got, want in zip(constituents_of(batch, 1), (pt, deta, dphi)):
        np.testing.assert_array_equal(got, want)
    assert constituents_of(batch.slice(0, 0), 1)[0].shape == (0, 30)
