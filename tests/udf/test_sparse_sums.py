"""The sums of the sparse built-ins (:mod:`udfkit.udf.builtins._sparse`) equal numpy's on the
densified matrix, through the numba scatter-add (many entries) and through numpy (few entries,
dtypes numba does not take)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from udfkit.testing.profiles import examples
from udfkit.udf.builtins import _sparse
from udfkit.udf.builtins._sparse_kernels import scatter_add, takes


def _matrix(seed, rows, cols, dtype, entries):
    rng = np.random.default_rng(seed)
    r = rng.integers(0, rows, entries)
    c = rng.integers(0, cols, entries)  # repeated (row, column) pairs: duplicates add up
    v = (rng.random(entries) * 50).astype(dtype)
    if np.dtype(dtype).kind == "c":
        v = v + 1j * v[::-1]
    return scipy.sparse.csr_matrix((v.astype(dtype), (r, c)), shape=(rows, cols))


@settings(max_examples=examples(8), deadline=None)
@given(seed=st.integers(0, 1000), entries=st.sampled_from([10, 5000, 20000]),
       dtype=st.sampled_from(["uint16", "float32", "complex64", ">u2"]),
       integer_sum=st.booleans())
def test_sums_equal_numpy(seed, entries, dtype, integer_sum):
    kind = np.dtype(dtype).kind
    # the accumulators the built-ins choose: complex for complex data, int64 on request
    acc = "complex128" if kind == "c" else "int64" if integer_sum and kind == "u" else "float64"
    m = _matrix(seed, 40, 300, np.dtype(dtype).newbyteorder("="), entries)
    if dtype == ">u2":
        m.data = m.data.astype(">u2")  # byte-swapped values go through numpy
    dense = m.toarray().astype(acc)
    got = _sparse.column_sums(m, np.zeros(300, acc))
    np.testing.assert_allclose(got, dense.sum(axis=0), rtol=1e-6)
    got = _sparse.row_sums(m, np.zeros(40, acc))
    np.testing.assert_allclose(got, dense.sum(axis=1), rtol=1e-6)
    if kind != "c":
        got = _sparse.column_sums(m, np.zeros(300, "float64"), square=True)
        np.testing.assert_allclose(got, (dense.astype(np.float64) ** 2).sum(axis=0), rtol=1e-6)


def test_kernel_checks_its_input():
    out = np.zeros(3)
    with pytest.raises(IndexError, match="index 3 .*outside the 3 sums"):
        scatter_add(out, np.array([0, 3], np.int32), np.ones(2))
    assert takes(out, np.zeros(2, np.int32), np.zeros(2, np.uint16))
    assert not takes(out, np.zeros(2, np.int32), np.zeros(2, np.complex64))  # complex into real
    assert not takes(np.zeros(3, np.int64), np.zeros(2, np.int32), np.zeros(2, np.float32))
    assert not takes(out, np.zeros(2, ">i4"), np.zeros(2))  # byte-swapped
    assert not takes(out[::2], np.zeros(2, np.int32), np.zeros(2))  # not contiguous
