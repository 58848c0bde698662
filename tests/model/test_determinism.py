"""A score is a function of the model and the event only (issue 13): the same bits at any BLAS thread
count, in any batch and at any row offset, at any SIMD level of the CPU, in process and on every engine
(the engine comparisons are in test_scoring.py, against a reference scored here at several threads).

Each test sets the state it compares (thread counts, CPU features) itself, so it checks the same thing
whatever ran before it in the process and on whatever machine it runs."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from sparkad.model.directory import Scorer
from sparkad.model.dense import TILE, dense

MANY_THREADS = 4  # more than CI's 2 cores: OpenBLAS splits differently at 1 and at 4 threads


def sequential_reference(x, w, b):
    """x @ w + b summed over k in index order, every step one IEEE operation (numpy's elementwise
    multiply and add never fuse): what the fixed-order kernel must reproduce bit for bit."""
    out = np.zeros((x.shape[0], w.shape[1]), x.dtype)
    for p in range(x.shape[1]):
        out = out + x[:, p:p + 1] * w[p]
    return out + b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k,m", [(0, 5, 3), (1, 43, 50), (TILE - 1, 50, 4), (TILE, 64, 1), (TILE + 1, 7, 128),
                                   (1000, 43, 50), (333, 128, 1), (257, 16, 43)])
def test_dense_kernel_is_the_sequential_sum(n, k, m, dtype):
    rng = np.random.default_rng(n * 1000 + k * 10 + m)
    x = rng.normal(size=(n, k)).astype(dtype) * rng.lognormal(0, 3, size=k).astype(dtype)
    w = rng.normal(size=(k, m)).astype(dtype)
    b = rng.normal(size=m).astype(dtype)
    got = dense(x, w, b)
    assert got.dtype == dtype and got.shape == (n, m)
    np.testing.assert_array_equal(got, sequential_reference(x, w, b))
    # the same rows in another batch and at another offset
    if n > 2:
        np.testing.assert_array_equal(dense(x[1:n - 1], w, b), got[1:n - 1])
    if n >= 100 and k >= 16:
        # the comparison is sharp: summing in the reverse order changes some of these results
        rev = sequential_reference(x[:, ::-1], w[::-1], b)
        assert not np.array_equal(rev, got)


@pytest.mark.parametrize("k1,k2,m", [(43, 43, 128), (5, 3, 1), (8, 9, 7)])
def test_dense_kernel_continues_partial_sums(k1, k2, m):
    """ALAD's discriminator sees [x, x] and [x, G(E(x))]: the products over x are summed once and
    continued, which must be bit for bit the sum over the concatenated inputs."""
    rng = np.random.default_rng(k1 + k2 + m)
    x1, x2 = rng.normal(size=(200, k1)).astype(np.float32), rng.normal(size=(200, k2)).astype(np.float32)
    w = rng.normal(size=(k1 + k2, m)).astype(np.float32)
    b = rng.normal(size=m).astype(np.float32)
    whole = dense(np.concatenate([x1, x2], 1), w, b)
    np.testing.assert_array_equal(dense(x2, w[k1:], b, init=dense(x1, w[:k1])), whole)
    np.testing.assert_array_equal(whole, sequential_reference(np.concatenate([x1, x2], 1), w, b))


def test_dense_kernel_refuses_shapes_that_do_not_chain():
    with pytest.raises(ValueError, match="do not chain"):
        dense(np.zeros((3, 4), np.float32), np.zeros((5, 2), np.float32))


def _blas_threads():
    return sorted({i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"})


def _frame(generated_hlf):
    df = pd.read_parquet(generated_hlf)
    return df.sort_values(["dataset", "run", "luminosityBlock", "event"]).reset_index(drop=True)


@pytest.fixture(scope="module", params=["ae", "alad", "vae"])
def model(request):
    return request.getfixturevalue(f"trained_{request.param}")


def test_scores_do_not_depend_on_threads_batch_or_offset(model, generated_hlf):
    scorer = Scorer(model)
    x = _frame(generated_hlf)[scorer.features].to_numpy(np.float64)
    assert len(x) > 2 * Scorer.ROW_BLOCK  # several blocks, and a partial one
    with threadpool_limits(1, user_api="blas"):
        assert _blas_threads() in ([], [1])
        ref = scorer.score(x)
    with threadpool_limits(MANY_THREADS, user_api="blas"):
        assert _blas_threads() in ([], [MANY_THREADS])
        many = scorer.score(x)
        # batches of other sizes, starting at other rows
        for size, start in ((1, 0), (7, 3), (500, 123), (Scorer.ROW_BLOCK + 1, 4000), (len(x), 0)):
            rows = slice(start, min(len(x), start + 3 * size + 11))
            parts = [scorer.score(x[i:min(i + size, rows.stop)]) for i in range(rows.start, rows.stop, size)]
            for name in ref:
                got = np.concatenate([p[name] for p in parts])
                np.testing.assert_array_equal(got, ref[name][rows], err_msg=f"{name}, batches of {size}")
    assert set(ref) == set(scorer.score_names)
    for name in ref:
        assert np.isfinite(ref[name]).all()
        np.testing.assert_array_equal(many[name], ref[name], err_msg=f"{name}: 1 vs {MANY_THREADS} BLAS threads")


SCORE_IN_SUBPROCESS = """
import sys, numpy as np, pandas as pd
from sparkad.model.directory import Scorer
s = Scorer(sys.argv[1])
df = pd.read_parquet(sys.argv[2]).sort_values(["dataset", "run", "luminosityBlock", "event"])
np.savez(sys.argv[3], **s.score(df[s.features].to_numpy(np.float64)))
"""


def _simd_levels_found():
    """numpy's run-time SIMD targets this CPU has (X86_V3, X86_V4, ... on x86-64; ASIMD extensions on ARM)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]


def test_scores_are_the_same_at_every_simd_level(model, generated_hlf, tmp_path):
    """The scores of a process whose numpy runs at its baseline SIMD level only, whose numba compiles
    for a generic CPU and whose OpenBLAS uses its oldest x86 kernels equal this process's bit for bit."""
    ref = Scorer(model).score(_frame(generated_hlf)[Scorer(model).features].to_numpy(np.float64))
    env = dict(os.environ, NUMBA_CPU_NAME="generic", NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    found = _simd_levels_found()
    if found:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(found)
    if os.uname().machine in ("x86_64", "AMD64"):
        env["OPENBLAS_CORETYPE"] = "Prescott"
    r = subprocess.run([sys.executable, "-c", SCORE_IN_SUBPROCESS, str(model), str(generated_hlf), str(tmp_path / "s.npz")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    with np.load(tmp_path / "s.npz") as z:
        for name in ref:
            np.testing.assert_array_equal(z[name], ref[name], err_msg=f"{name}: baseline SIMD ({', '.join(found)} "
                                                                       f"disabled, numba generic) vs this CPU")


@pytest.mark.parametrize("kind", ["alad", "ae", "vae"])
def test_a_score_computed_alone_is_the_same_bits(kind, request, generated_hlf):
    """Scorer(scores=[...]) runs only what those scores need (ALAD's L1 skips Dxx, the KL divergence
    the decoder, a baseline the networks): each score is the bits it is among all the others."""
    model = request.getfixturevalue(f"trained_{kind}")
    full = Scorer(model)
    df = pd.read_parquet(generated_hlf, columns=full.features).iloc[:3000]
    ref = full.score_frame(df)
    assert list(ref) == full.score_names == full.all_score_names
    for name in full.all_score_names:
        one = Scorer(model, scores=[name])
        got = one.score_frame(df)
        assert list(got) == one.score_names == [name]
        np.testing.assert_array_equal(got[name], ref[name])
    pair = Scorer(model, scores=[full.all_score_names[-1], full.all_score_names[0]])
    assert pair.score_names == [full.all_score_names[0], full.all_score_names[-1]]  # the model's order
    with pytest.raises(Exception, match=r"has no score\(s\) 'nope'"):
        Scorer(model, scores=["nope"])
