"""Help text for the command line from one source: the ``Attributes:`` (or ``Args:``) section
of a config dataclass's docstring, which documents each field once for the library and for
``--help`` alike; and a formatter that shows only defaults that mean something.

Example:
    >>> from multihead.train import TrainConfig
    >>> field_docs(TrainConfig)["steps"]
    'optimizer steps in total.'
    >>> field_docs(TrainConfig)["min_lr"]                # "lr, min_lr: ..." documents both
    'peak and final learning rate.'
"""

from __future__ import annotations

import argparse
import re
from typing import Any

# "Attributes:", "Args:", "Attributes (besides :class:`X`'s):"
_SECTION = re.compile(r"(Attributes|Args)(\s*\(.*\))?:")
# "name: text" or "name, other: text"
_ENTRY = re.compile(r"(?P<names>[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*:(?:\s+(?P<text>.*))?")
_ROLE = re.compile(r":[a-z]+:`~?(?P<target>[^`<]*?)(?:\s*<[^>]*>)?`")


def plain(text: str) -> str:
    """reStructuredText markup as plain text, on one line.

    >>> plain("``\\"text\\"`` or a :class:`~multihead.data.SyntheticTask`")
    '"text" or a SyntheticTask'
    """
    text = _ROLE.sub(lambda m: m["target"].rsplit(".", 1)[-1], text)
    return " ".join(text.replace("``", "").split())


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _parse(doc: str) -> dict[str, str]:
    lines = doc.expandtabs().splitlines()
    found: dict[str, str] = {}
    i = 0
    while i < len(lines):
        header = lines[i]
        i += 1
        if not _SECTION.fullmatch(header.strip()):
            continue
        level, entry_level, names, parts = _indent(header), None, [], []
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > level):
            line = lines[i]
            i += 1
            if not line.strip():
                continue
            m = _ENTRY.fullmatch(line.strip())
            if m and (entry_level is None or _indent(line) <= entry_level):
                found.update(dict.fromkeys(names, plain(" ".join(parts))))
                entry_level = _indent(line)
                names = [n.strip() for n in m["names"].split(",")]
                parts = [m["text"] or ""]
            else:
                parts.append(line)
        found.update(dict.fromkeys(names, plain(" ".join(parts))))
    return found


def field_docs(cls: type) -> dict[str, str]:
    """Each field's description from the ``Attributes:``/``Args:`` sections of the docstrings
    of ``cls`` and its base classes (a subclass's entry wins), as plain one-line text."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        docs.update(_parse(klass.__dict__.get("__doc__") or ""))
    return docs


def show(value: Any) -> str:
    """A value as one types it on the command line: ``none`` for None.

    >>> show(None), show(3e-3), show("rope")
    ('none', '0.003', 'rope')
    """
    return "none" if value is None else str(value)


def escape(text: str) -> str:
    """``text`` safe for argparse's help (which %-formats it)."""
    return text.replace("%", "%%")


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to options whose default is a value: not to switches, to help
    already stating its default, or to defaults of None (no value: the help says what
    happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "(default" in text
            or not action.option_strings
            or action.nargs == 0
            or default is None
            or default is argparse.SUPPRESS
            or default == []
        ):
            return text
        return f"{text} (default: %(default)s)"
