"""Tests of the input parsers in :mod:`udfkit.common.parse`."""

import numpy as np
import pytest

from udfkit.common import normalize_dtype, normalize_roi, normalize_shape, parse_size


class MyError(ValueError):
    pass


# -- normalize_shape --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value, expected",
    [
        ((4, 5), (4, 5)),
        ([4, 5, 6], (4, 5, 6)),
        (7, (7,)),
        (np.int64(7), (7,)),
        ((np.int32(3), np.uint16(4)), (3, 4)),
        (np.array([2, 3]), (2, 3)),
        (range(1, 4), (1, 2, 3)),
        ((1,), (1,)),
    ],
)
def test_normalize_shape_accepts(value, expected):
    res = normalize_shape(value)
    assert res == expected
    assert type(res) is tuple
    assert all(type(x) is int for x in res)


@pytest.mark.parametrize(
    "value, match",
    [
        ((4, 0), r"shape: expected positive integers, got \(4, 0\)"),
        ((4, -2), r"expected positive integers, got \(4, -2\)"),
        (0, "expected positive integers"),
        (-3, "expected positive integers"),
        ((4.0, 5), "expected a tuple of positive integers"),
        ((True, 5), "expected a tuple of positive integers"),
        (True, "expected a tuple of positive integers"),
        ("45", "expected a tuple of positive integers"),
        (None, "expected a tuple of positive integers, got None"),
        (4.5, "expected a tuple of positive integers, got 4.5"),
        ((), r"expected 1 to any number of dimensions, got \(\) \(0 dimensions\)"),
    ],
)
def test_normalize_shape_rejects(value, match):
    with pytest.raises(ValueError, match=match):
        normalize_shape(value)


@pytest.mark.parametrize(
    "value, min_dims, max_dims, ok",
    [
        ((1, 2, 3), 1, 3, True),
        ((1, 2, 3, 4), 1, 3, False),
        ((1,), 2, None, False),
        ((1, 2), 2, None, True),
        ((1, 2, 3, 4, 5, 6), 1, None, True),
    ],
)
def test_normalize_shape_dims_limits(value, min_dims, max_dims, ok):
    if ok:
        assert normalize_shape(value, min_dims=min_dims, max_dims=max_dims) == value
    else:
        pattern = rf"expected {min_dims} to .* dimensions.*\({len(value)} dimensions\)"
        with pytest.raises(ValueError, match=pattern):
            normalize_shape(value, min_dims=min_dims, max_dims=max_dims)


def test_normalize_shape_error_class_name_and_where():
    pattern = r"^scan\.raw: nav_shape: expected positive integers, got \(4, 0\)$"
    with pytest.raises(MyError, match=pattern):
        normalize_shape((4, 0), "nav_shape", error=MyError, where="scan.raw")
    with pytest.raises(MyError, match=r"^sig_shape: expected 1 to 3 dimensions"):
        normalize_shape((1, 1, 1, 1), "sig_shape", max_dims=3, error=MyError)


# -- normalize_dtype --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value, expected",
    [
        ("uint16", np.dtype("uint16")),
        (">f4", np.dtype(">f4")),
        ("<i8", np.dtype("<i8")),
        (np.float32, np.dtype("float32")),
        (np.dtype(">u2"), np.dtype(">u2")),
        (float, np.dtype("float64")),
        (complex, np.dtype("complex128")),
        (bool, np.dtype("bool")),
        ("complex64", np.dtype("complex64")),
        ("f2", np.dtype("float16")),
        ("i1", np.dtype("int8")),
    ],
)
def test_normalize_dtype_accepts(value, expected):
    res = normalize_dtype(value)
    assert isinstance(res, np.dtype)
    assert res == expected
    assert res.byteorder == expected.byteorder


def test_normalize_dtype_keeps_byte_order():
    assert normalize_dtype(">f4").str == ">f4"
    assert normalize_dtype("<u2").str == "<u2"


@pytest.mark.parametrize(
    "value, match",
    [
        ("uint17", r"dtype: expected a numpy dtype such as 'uint16' or '>f4', got 'uint17'"),
        ("f3", "expected a numpy dtype.*got 'f3'"),
        (3.5, "expected a numpy dtype.*got 3.5"),
        (None, "expected a numeric dtype.*got None"),
        ("U5", "expected a numeric dtype.*got 'U5'"),
        ("S4", "expected a numeric dtype.*got 'S4'"),
        (object, "expected a numeric dtype"),
        ("M8[ns]", "expected a numeric dtype"),
        ("i4,i4", "expected a numeric dtype"),
    ],
)
def test_normalize_dtype_rejects(value, match):
    with pytest.raises(ValueError, match=match):
        normalize_dtype(value)


def test_normalize_dtype_error_class_and_where():
    pattern = r"^raw file 'x\.raw': dtype: expected a numpy dtype .*'uint17'$"
    with pytest.raises(MyError, match=pattern):
        normalize_dtype("uint17", error=MyError, where="raw file 'x.raw'")
    with pytest.raises(MyError, match=r"^w: dtype: expected a numeric dtype"):
        normalize_dtype("U3", error=MyError, where="w")


# -- parse_size -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value, expected",
    [
        (0, 0),
        (4096, 4096),
        (np.int64(100), 100),
        ("4096", 4096),
        ("64M", 64 << 20),
        ("64m", 64 << 20),
        ("64MB", 64 << 20),
        ("64MiB", 64 << 20),
        ("1 MiB", 1 << 20),
        ("  2k ", 2048),
        ("512k", 512 << 10),
        ("512KiB", 512 << 10),
        ("1.5GiB", 1610612736),
        ("1G", 1 << 30),
        ("2T", 2 << 40),
        ("0.5M", 1 << 19),
        ("10B", 10),
        ("10b", 10),
    ],
)
def test_parse_size_accepts(value, expected):
    res = parse_size(value)
    assert res == expected
    assert type(res) is int


@pytest.mark.parametrize(
    "value, match",
    [
        ("lots", r"expected a byte size such as 4096, '64M' or '1GiB', got 'lots'"),
        ("", "expected a byte size"),
        ("-1M", "expected a byte size"),
        ("1e3", "expected a byte size"),
        ("12 P", "expected a byte size"),
        ("M", "expected a byte size"),
        (1.5, "expected a byte size.*got 1.5"),
        (None, "expected a byte size.*got None"),
        (True, "expected a byte size"),
        (-1, "expected a non-negative byte size, got -1"),
    ],
)
def test_parse_size_rejects(value, match):
    with pytest.raises(ValueError, match=match):
        parse_size(value)


def test_parse_size_error_class():
    with pytest.raises(MyError):
        parse_size("lots", error=MyError)
    with pytest.raises(MyError):
        parse_size(-5, error=MyError)


# -- normalize_roi ----------------------------------------------------------------------------

def test_normalize_roi_none():
    assert normalize_roi(None, (4, 4)) is None


def test_normalize_roi_nav_shaped():
    roi = np.zeros((3, 4), dtype=bool)
    roi[1, 2] = roi[2, 0] = True
    res = normalize_roi(roi, (3, 4))
    assert res.shape == (12,)
    assert res.dtype == np.bool_
    assert res.flags.c_contiguous
    np.testing.assert_array_equal(np.flatnonzero(res), [6, 8])


def test_normalize_roi_flat():
    roi = np.zeros(12, dtype=bool)
    roi[[0, 11]] = True
    res = normalize_roi(roi, (3, 4))
    np.testing.assert_array_equal(res, roi)


def test_normalize_roi_list_of_bools():
    res = normalize_roi([[True, False], [False, True]], (2, 2))
    np.testing.assert_array_equal(res, [True, False, False, True])


def test_normalize_roi_non_contiguous_input():
    roi = np.zeros((4, 6), dtype=bool)
    roi[::2, ::3] = True
    view = roi.T  # (6, 4), non-contiguous
    res = normalize_roi(view, (6, 4))
    assert res.flags.c_contiguous
    np.testing.assert_array_equal(res, np.ascontiguousarray(view).reshape(-1))


def test_normalize_roi_accepts_tuple_nav_shape_forms():
    roi = np.ones((2, 3), bool)
    assert normalize_roi(roi, [2, 3]).shape == (6,)


@pytest.mark.parametrize(
    "roi, match",
    [
        (np.ones((3, 3), bool),
         r"roi: expected a bool array of the nav shape \(2, 2\) or flat with 4 entries, "
         r"got shape \(3, 3\)"),
        (np.ones(5, bool), r"flat with 4 entries, got shape \(5,\)"),
        (np.ones((4, 1), bool), r"got shape \(4, 1\)"),
        # 0/1 numbers are accepted (LiberTEM casts them); other values are not
        (np.full((2, 2), 2), r"expected a bool array of the nav shape \(2, 2\) \(or one of 0 and 1\), "
                             r"got dtype int64 with values \[2\]"),
        (np.full((2, 2), 0.5), r"got dtype float64 with values \[0.5\]"),
    ],
)
def test_normalize_roi_rejects(roi, match):
    with pytest.raises(ValueError, match=match):
        normalize_roi(roi, (2, 2))


def test_normalize_roi_error_class_and_where():
    with pytest.raises(MyError, match=r"^ds: roi: expected"):
        normalize_roi(np.ones(3, bool), (2, 2), error=MyError, where="ds")
