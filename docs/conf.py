"""Sphinx configuration of the udfkit documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (or ``tox -e docs``).
The build needs no network access: no intersphinx, a built-in theme, no remote images.
"""

import os
import sys

# build from this checkout, installed or not (the docs import udfkit for autodoc)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import udfkit  # noqa: E402

project = "udfkit"
author = "the udfkit developers"
copyright = "the udfkit developers"
release = udfkit.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "numpydoc",
]

source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
language = "en"
pygments_style = "sphinx"

# -- autodoc / numpydoc --------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc sections carry the types
autodoc_inherit_docstrings = True
numpydoc_show_class_members = False  # members are listed by autodoc (:members:)
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

# -- HTML ----------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"udfkit {release}"
html_static_path = []
html_theme_options = {
    "description": "UDFs over n-dimensional data sets larger than memory",
    "fixed_sidebar": True,
    "show_relbars": True,
}
html_show_sourcelink = False
