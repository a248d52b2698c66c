"""Hypothesis profiles of the test suite, and example counts that follow them.

Three profiles, registered by :func:`register_profiles` (the test suite's root
``conftest.py`` calls it):

``default``
    The everyday run: hypothesis' own defaults (100 examples unless a test asks for fewer or
    more, random examples, a local example database).
``ci``
    Half the example counts, derandomised (every run draws the same examples, so a red CI
    run is red again on a rerun and on the developer's machine), no example database, no
    deadline (shared CI machines have noisy timings), and the reproduction blob of a failing
    example printed. Half, so that the whole default run stays within ten minutes on a
    2-core CI machine; the everyday ``default`` profile draws new examples on every run, and
    ``nightly`` runs ten times as many.
``nightly``
    Ten times the examples of every property test, no deadline: the long run that used to be
    separate ``*_many_examples`` copies of the tests.

A profile is chosen with hypothesis' own pytest option ``--hypothesis-profile=NAME`` or with
the environment variable ``UDFKIT_HYPOTHESIS_PROFILE`` (the option wins when both are given).

Tests ask for their number of examples with :func:`examples`, which scales what the test
needs under ``default`` by the active profile: ``@settings(max_examples=examples(20))`` runs
20 examples by default and in CI, 200 nightly. A test without ``max_examples`` inherits the
profile's count (100, or 1000 nightly).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

__all__ = ["PROFILES", "ENV_VAR", "BASE_EXAMPLES", "register_profiles", "load_profile", "examples"]

#: ``max_examples`` of the ``default`` profile: :func:`examples` scales by the active
#: profile's ``max_examples`` over this
BASE_EXAMPLES = 100

#: the environment variable that selects a profile
ENV_VAR = "UDFKIT_HYPOTHESIS_PROFILE"

#: the keyword arguments of :class:`hypothesis.settings` of each profile
PROFILES: dict[str, dict[str, Any]] = {
    "default": dict(max_examples=BASE_EXAMPLES),
    "ci": dict(max_examples=BASE_EXAMPLES // 2, derandomize=True, database=None, deadline=None,
               print_blob=True, suppress_health_check=[HealthCheck.too_slow]),
    "nightly": dict(max_examples=10 * BASE_EXAMPLES, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow]),
}


def register_profiles() -> None:
    """Register :data:`PROFILES` with hypothesis (again: later registrations replace earlier
    ones, so calling it twice is harmless).

    Examples
    --------
    >>> from hypothesis import settings
    >>> register_profiles()
    >>> settings.get_profile("nightly").max_examples
    1000
    >>> settings.get_profile("ci").derandomize
    True
    """
    # the parent is the "default" profile (hypothesis' built-in one at first), not the loaded
    # profile: hypothesis loads its "ci" profile by itself on CI machines
    base = settings.get_profile("default")
    for name, kwargs in PROFILES.items():
        settings.register_profile(name, settings(base, **kwargs))


def load_profile(name: str | None = None) -> str:
    """Load the profile ``name``, else the one named by :data:`ENV_VAR`, else reload the
    active one (hypothesis loads its own ``ci`` profile when it detects a CI machine; reloading
    picks up the registration of :func:`register_profiles`).

    Returns
    -------
    str
        The name of the profile now loaded.

    Raises
    ------
    ValueError
        When the name is not a registered profile; the message lists the registered ones.
    """
    if name is None:
        name = os.environ.get(ENV_VAR) or _current_name()
    try:
        settings.get_profile(name)
    except InvalidArgument:
        known = sorted(PROFILES)
        source = f"${ENV_VAR}" if os.environ.get(ENV_VAR) == name else "profile"
        raise ValueError(f"{source}: expected one of the hypothesis profiles {known}, got {name!r}") \
            from None
    settings.load_profile(name)
    return name


def _current_name() -> str:
    # settings.get_current_profile_name is new in hypothesis 6.1xx; older ones start at "default"
    get = getattr(settings, "get_current_profile_name", None)
    return get() if get is not None else "default"


def examples(n: int) -> int:
    """``n`` examples under the ``default`` profile, scaled by the active profile.

    Parameters
    ----------
    n : int
        The examples a test runs in the everyday run.

    Returns
    -------
    int
        ``n`` times the active profile's ``max_examples`` over :data:`BASE_EXAMPLES` (at
        least 1).

    Examples
    --------
    >>> from hypothesis import settings
    >>> register_profiles()
    >>> active = _current_name()
    >>> settings.load_profile("nightly")
    >>> examples(20)
    200
    >>> settings.load_profile("ci")
    >>> examples(20)
    10
    >>> settings.load_profile(active)
    """
    active = settings.default
    assert active is not None  # hypothesis always has a loaded profile
    return max(1, round(n * active.max_examples / BASE_EXAMPLES))
