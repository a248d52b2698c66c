"""Hypothesis profiles of the whole test suite (see :mod:`udfkit.testing.profiles`).

``default``
    What ``python -m pytest`` runs: hypothesis' defaults, each property test with its own
    example count.
``ci``
    Half the example counts (the default run stays within ten minutes on 2 cores),
    derandomised (a failure reproduces on rerun and on another
    machine), no example database, no deadline, the reproduction blob printed.
``nightly``
    Ten times the examples of every property test (``-m slow`` runs the long cases too):
    ``python -m pytest -m "" --hypothesis-profile=nightly``.

Select one with hypothesis' option ``--hypothesis-profile=NAME`` or the environment variable
``UDFKIT_HYPOTHESIS_PROFILE=NAME`` (the option wins). A test scales its example count with
:func:`udfkit.testing.profiles.examples` (``@settings(max_examples=examples(20))``); copies
of a test with more examples are not needed.
"""

from udfkit.testing.profiles import load_profile, register_profiles

# conftest.py is imported before hypothesis' plugin reads --hypothesis-profile (at
# pytest_configure), and before test modules apply @settings at import: both see these
register_profiles()
load_profile()


def pytest_collection_modifyitems(config, items):
    """Mark every case that runs on the dask executor ``cluster`` (it starts a local cluster),
    so that ``-m "not slow and not cluster"`` is a short inner loop wherever such a case is
    parametrized (format suites, UDF method tests), not only in tests/executor."""
    import pytest

    cluster = pytest.mark.cluster
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or item.get_closest_marker("cluster") is not None:
            continue
        if any(_is_dask(value) for value in callspec.params.values()):
            item.add_marker(cluster)


def _is_dask(value) -> bool:
    if isinstance(value, str):
        return value == "dask"
    if isinstance(value, tuple) and value:
        return _is_dask(value[0])
    return False
