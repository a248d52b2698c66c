"""Bad parameters of the image built-ins: a clear :class:`~udfkit.errors.UDFParameterError`
naming the UDF, what was expected and what was found, at construction where the parameter
alone is wrong, and before any data is read where it does not fit the data set."""

from __future__ import annotations

import numpy as np
import pytest

from udfkit import Context
from udfkit.errors import UDFError, UDFParameterError
from udfkit.udf import (
    BinUDF,
    GaussianFilterUDF,
    LocalCorrUDF,
    MaxMinProjectionUDF,
    MaxProjectionUDF,
    MedianFilterUDF,
    SubsampleUDF,
    UniformFilterUDF,
)


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


@pytest.mark.parametrize("make, match", [
    (lambda: UniformFilterUDF(size="3"), r"UniformFilterUDF: size must be an int or a sequence "
                                          r"of ints \(one per signal axis\), got '3'"),
    (lambda: MedianFilterUDF(size=2.5), r"MedianFilterUDF: size must be an int"),
    (lambda: MedianFilterUDF(size=()), r"MedianFilterUDF: size must be an int"),
    (lambda: UniformFilterUDF(mode="edge"), r"UniformFilterUDF: mode must be one of reflect, "
                                            r"constant.*got 'edge'"),
    (lambda: GaussianFilterUDF(sigma="wide"), r"GaussianFilterUDF: sigma must be a number"),
    (lambda: GaussianFilterUDF(order=1.5), r"GaussianFilterUDF: order must be an int"),
    (lambda: GaussianFilterUDF(truncate=0), r"GaussianFilterUDF: truncate must be > 0, got 0"),
    (lambda: GaussianFilterUDF(cval=None), r"GaussianFilterUDF: cval must be a number"),
    (lambda: SubsampleUDF(factor=True), r"SubsampleUDF: factor must be an int"),
    (lambda: BinUDF(reduce="max"), r"BinUDF: reduce must be 'sum' or 'mean', got 'max'"),
    (lambda: BinUDF(edge="pad"), r"BinUDF: edge must be 'trim' or 'partial', got 'pad'"),
    (lambda: LocalCorrUDF(size=[2, None]), r"LocalCorrUDF: size must be an int"),
    (lambda: LocalCorrUDF(mode="bogus"), r"LocalCorrUDF: mode must be one of"),
])
def test_bad_parameters_at_construction(make, match):
    with pytest.raises(UDFParameterError, match=match):
        make()


def run(ctx, udf, data, sig_dims=2):
    return ctx.run_udf(dataset=ctx.load("memory", data=data, sig_dims=sig_dims), udf=udf)


FRAMES = np.zeros((3, 6, 5), dtype="uint16")


@pytest.mark.parametrize("udf, match", [
    (UniformFilterUDF(size=(3, 3, 3)), r"UniformFilterUDF: size=\(3, 3, 3\) has 3 values, but "
                                       r"the data set's frames have 2 signal axes \(sig shape "
                                       r"\(6, 5\)\)"),
    (MedianFilterUDF(size=-1), r"MedianFilterUDF: every size must be at least 0, got -1"),
    (GaussianFilterUDF(sigma=-1.0), r"GaussianFilterUDF: sigma must be finite and >= 0"),
    (GaussianFilterUDF(sigma=(1.0, float("nan"))), r"sigma must be finite"),
    (GaussianFilterUDF(order=4), r"GaussianFilterUDF: order must be 0, 1, 2 or 3 per axis"),
    (SubsampleUDF(factor=0), r"SubsampleUDF: every factor must be at least 1, got 0"),
    (SubsampleUDF(factor=(2,)), r"SubsampleUDF: factor=\(2,\) has 1 values.*2 signal axes"),
    (BinUDF(factor=7), r"BinUDF: factor \(7, 7\) is larger than the frame \(sig shape \(6, 5\)\), "
                       r"so edge='trim' leaves no bin; use a smaller factor or edge='partial'"),
    (MaxProjectionUDF(), r"MaxProjectionUDF: axis 2 is not a signal axis of the data set: its "
                         r"frames have sig shape \(6, 5\), so axis must be in -2..1"),
    (MaxMinProjectionUDF(axis=-3), r"MaxMinProjectionUDF: axis -3 is not a signal axis"),
    (MaxProjectionUDF(axis=1.0), r"MaxProjectionUDF: axis must be an int, got 1.0"),
    (LocalCorrUDF(size=(2, 2, 2)), r"LocalCorrUDF: size=\(2, 2, 2\) has 3 values"),
])
def test_parameters_that_do_not_fit_the_data_set(ctx, udf, match):
    with pytest.raises(UDFParameterError, match=match):
        run(ctx, udf, FRAMES)


@pytest.mark.parametrize("udf, what", [
    (MedianFilterUDF(), "the median"), (MaxProjectionUDF(axis=0), "the maximum"),
    (MaxMinProjectionUDF(axis=0), "the maximum and minimum"),
    (LocalCorrUDF(), "the correlation"),
])
def test_complex_data_where_undefined(ctx, udf, what):
    data = np.ones((2, 4, 4), dtype="complex64")
    with pytest.raises(UDFError, match=rf"{type(udf).__name__}: {what} is not defined for "
                                       rf"complex data; the data set has dtype complex"):
        run(ctx, udf, data)


def test_bin_partial_edge_takes_a_factor_larger_than_the_frame(ctx):
    res = run(ctx, BinUDF(factor=7, edge="partial", reduce="mean"), np.ones((2, 6, 5), "uint8"))
    np.testing.assert_array_equal(res["intensity"].data, np.ones((2, 1, 1), np.float32))
