"""A griffe extension for the site's API page (mkdocs.yml, mkdocstrings): the package's
docstrings head their doctests `Example:`, which griffe's Google-style parser takes for an
admonition and renders as prose, so `[['file', ...]]` in an expected output becomes a broken
cross-reference. Read as `Examples:`, they are rendered as the Python sessions they are.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

EXAMPLE_HEADING = re.compile(r"^(\s*)Example:\s*$", re.M)


class DoctestExamples(griffe.Extension):
    """Rename each docstring's `Example:` section to `Examples:`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = EXAMPLE_HEADING.sub(r"\1Examples:", obj.docstring.value)
