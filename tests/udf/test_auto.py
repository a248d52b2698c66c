"""AutoUDF: the function's value for every frame, with the buffer found from a frame of ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import Context
from udfkit.errors import UDFError
from udfkit.testing import ALL_EXECUTORS, SharedContexts
from udfkit.testing.physics import assert_nav_full, full_frames, physics_cases
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import load
from udfkit.udf import AutoUDF

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.data_too_large])
FAST = ["inline", "inline-debug", "threads"]
shared_context = SharedContexts({k: ALL_EXECUTORS[k] for k in FAST})
_close_shared_contexts = shared_context.closing_fixture()


def profile(frame):
    """Row sums and the brightest pixel: an array result of shape (rows + 1,)."""
    return np.concatenate([frame.sum(axis=1), [frame.max()]])


@settings(max_examples=examples(12), **SETTINGS)
@given(case=physics_cases(), monitor=st.booleans(), executor=st.sampled_from(FAST))
def test_auto_equals_numpy(case, monitor, executor, tmp_path_factory):
    ctx = shared_context(executor)
    ds = load(ctx, case, tmp_path_factory.mktemp("auto"))
    res = ctx.run_udf(dataset=ds, udf=AutoUDF(f=profile, monitor=monitor), roi=case.roi)
    full = full_frames(case)
    expected = np.concatenate([full.sum(axis=-1), full.max(axis=(-2, -1))[..., None]], axis=-1)
    # frames arrive as float32 (or float64 for float64 data): sums of small integers are exact
    assert res["result"].data.dtype == np.result_type(case.native_dtype, np.float32)
    assert_nav_full(res["result"], expected, case, rtol=1e-6)
    assert ("monitor" in res) == monitor
    if monitor:
        assert res["monitor"].kind == "single"
        if case.n:
            last = np.flatnonzero(case.processed)[-1]
            np.testing.assert_allclose(res["monitor"].data, expected.reshape(-1, expected.shape[-1])[last])
        else:
            np.testing.assert_array_equal(res["monitor"].data, 0)


@pytest.mark.parametrize("executor", FAST)
@pytest.mark.parametrize("with_roi", [False, True])
def test_scalar_function(executor, with_roi):
    data = np.random.default_rng(0).poisson(5, (4, 5, 6, 7)).astype("uint16")
    roi = np.random.default_rng(1).random((4, 5)) < 0.5 if with_roi else None
    ctx = shared_context(executor)
    res = ctx.run_udf(dataset=ctx.load("memory", data=data, num_partitions=3),
                      udf=AutoUDF(f=np.std, monitor=True), roi=roi)
    expected = data.astype("float32").std(axis=(-2, -1))
    assert res["result"].data.shape == (4, 5)
    inside = np.ones((4, 5), bool) if roi is None else roi
    np.testing.assert_allclose(res["result"].data[inside], expected[inside], rtol=1e-6)
    assert np.isnan(res["result"].data[~inside]).all()
    assert res["monitor"].data.shape == (1,)
    np.testing.assert_allclose(res["monitor"].data[0], expected[inside][-1], rtol=1e-6)


def test_output_dtype_follows_the_function():
    data = np.arange(2 * 3 * 4 * 4, dtype="float64").reshape(2, 3, 4, 4)
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data)
    res = ctx.run_udf(dataset=ds, udf=[AutoUDF(f=lambda f: f[0, :2]), AutoUDF(f=lambda f: f.sum() > 100),
                                       AutoUDF(f=lambda f: np.int16(f.max()))])
    assert res[0]["result"].data.dtype == np.float64
    np.testing.assert_array_equal(res[0]["result"].data, data[:, :, 0, :2])
    assert res[1]["result"].data.dtype == np.bool_
    np.testing.assert_array_equal(res[1]["result"].data, data.sum(axis=(-2, -1)) > 100)
    assert res[2]["result"].data.dtype == np.int16
    np.testing.assert_array_equal(res[2]["result"].data, data.max(axis=(-2, -1)))


def test_probe_frame_is_ones_of_the_input_dtype():
    seen = []

    def f(frame):
        seen.append((frame.dtype, float(frame.min()), float(frame.max())))
        return frame.sum()

    ctx = Context.make_with("inline")
    ctx.run_udf(dataset=ctx.load("memory", data=np.zeros((1, 2, 3, 3), dtype="uint8")), udf=AutoUDF(f=f))
    assert seen[0] == (np.dtype("float32"), 1.0, 1.0)


def test_alias_module():
    import udfkit.udf.auto as alias

    assert alias.AutoUDF is AutoUDF


def test_bad_input():
    with pytest.raises(UDFError, match="f must be a callable"):
        AutoUDF(f=3)
    with pytest.raises(UDFError, match="monitor must be True or False"):
        AutoUDF(f=np.sum, monitor="yes")
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=np.ones((2, 2, 3, 3)))

    def broken(frame):
        raise KeyError("no such thing")

    with pytest.raises(UDFError, match=r"f failed on a test frame of ones \(3, 3\).*KeyError"):
        ctx.run_udf(dataset=ds, udf=AutoUDF(f=broken))
    with pytest.raises(UDFError, match="must return numbers"):
        ctx.run_udf(dataset=ds, udf=AutoUDF(f=lambda frame: "text"))


@pytest.mark.parametrize("executor", FAST)
def test_libertem_documentation_example(executor):
    """LiberTEM's "Auto UDF" example: the sum over the last signal axis with functools.partial."""
    import functools

    data = np.random.default_rng(2).poisson(4, (3, 4, 5, 6)).astype("uint16")
    ctx = shared_context(executor)
    dataset = ctx.load("memory", data=data, num_partitions=2)
    udf = AutoUDF(f=functools.partial(np.sum, axis=-1))
    result = ctx.run_udf(dataset=dataset, udf=udf)
    assert result["result"].data.shape == (3, 4, 5)
    np.testing.assert_array_equal(result["result"].data, data.sum(axis=-1))
