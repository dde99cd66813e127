"""Markdown for comments, rendered and then sanitised: only formatting survives."""

from __future__ import annotations

import markdown as md
import nh3

ALLOWED_TAGS = {
    "p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li",
    "h3", "h4", "h5", "a", "table", "thead", "tbody", "tr", "th", "td", "hr", "del",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}


def render(text: str) -> str:
    """HTML safe to mark as such. Raw HTML in a comment is shown as the text people typed
    (Markdown's HTML passthrough is off), and nh3 (ammonia) then removes scripts, event
    handlers, styles and any URL scheme but http(s) and mailto, whatever remains."""
    converter = md.Markdown(
        extensions=["fenced_code", "tables", "sane_lists"], output_format="html"
    )
    converter.preprocessors.deregister("html_block")
    converter.inlinePatterns.deregister("html")
    html = converter.convert(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
