"""Reading a report page as a browser's parser would: elements, attributes, scripts, visible text."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from hpstudy.reports.html import FIGURES_ELEMENT_ID


@dataclass
class Element:
    """One start tag: its name and attributes."""

    tag: str
    attrs: dict[str, str | None]


@dataclass
class Script:
    """A script element: its attributes and its raw text."""

    attrs: dict[str, str | None]
    text: str = ""


@dataclass
class Page:
    """What the HTML parser saw."""

    elements: list[Element] = field(default_factory=list)
    scripts: list[Script] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def figures(self) -> list[dict[str, Any]]:
        """The figure specs carried in the page's JSON element."""
        (payload,) = [s for s in self.scripts if s.attrs.get("id") == FIGURES_ELEMENT_ID]
        return json.loads(payload.text)["figures"]

    def by_tag(self, tag: str) -> list[Element]:
        """Every element named ``tag``."""
        return [e for e in self.elements if e.tag == tag]

    def visible_text(self) -> str:
        """All text outside script and style elements, joined by spaces."""
        return " ".join(" ".join(chunk.split()) for chunk in self.text if chunk.strip())


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._raw: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.page.elements.append(Element(tag, dict(attrs)))
        if tag == "script":
            self.page.scripts.append(Script(dict(attrs)))
        if tag in ("script", "style"):
            self._raw = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._raw:
            self._raw = None

    def handle_data(self, data: str) -> None:
        if self._raw == "script":
            self.page.scripts[-1].text += data
        elif self._raw is None:
            self.page.text.append(data)


def read_page(html: str) -> Page:
    """Parse ``html`` with Python's HTML parser."""
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.page
