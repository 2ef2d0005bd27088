"""A griffe extension for the docs build: read ``Example:`` sections as examples.

neuronscope's docstrings head their doctests with ``Example:``; griffe's Google parser only
knows ``Examples:`` and would render the doctest lines as Markdown. This extension renames the
heading when docstrings are loaded (the source files are left as they are).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example:\s*$", flags=re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section headings to ``Examples:`` in every loaded docstring."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _HEADING.sub(r"\1Examples:", obj.docstring.value)
