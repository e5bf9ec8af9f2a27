"""Sphinx configuration of phasic's API reference (``make docs`` builds it into build/docs).

The pages name objects by the path users import them from (``phasic.Graph``, not the module
that defines it), so moving code between modules leaves the reference unchanged.
"""

import phasic

project = "phasic"
author = "the phasic authors"
copyright = "the phasic authors"
release = phasic.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",
    "myst_parser",
]

root_doc = "index"
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]

# autodoc: members in source order, signatures without type hints (the docstrings give the types)
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"show-inheritance": False}

# numpydoc: the pages list members explicitly, so no generated member tables
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False

# the markdown guides use headings from level 1 and plain links only
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"phasic {release}"
html_static_path = []
