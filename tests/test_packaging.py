"""Installing migplan warns about nothing of ours (issue 14 item 11: setuptools deprecated
the ``license = {text = ...}`` table; pyproject.toml gives an SPDX expression instead)."""

from __future__ import annotations

import warnings

from conftest import REPO


def test_pyproject_reads_without_a_deprecation_warning():
    # the build backend's own reading of pyproject.toml, as `pip install` does it
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), REPO / "pyproject.toml")
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "license" in m.lower() or "deprecat" in m.lower()], \
        messages
    assert dist.metadata.license_expression == "Apache-2.0"
