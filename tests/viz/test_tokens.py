"""Token labels: visible glyphs for whitespace and control characters, byte-level inputs
shown as characters, and tooltips that name each token exactly."""

from __future__ import annotations

import pytest

from multihead.viz.tokens import CONTINUATION, byte_labels, readable_text, readable_tokens


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain", "plain"),
        (" the", "␣the"),
        ("\n", "↵"),
        ("\t\r", "⇥\\r"),
        ("\x00\x1b\x7f", "\\x00\\x1b\\x7f"),
        ("\u00a0", "⍽"),
        ("a\u200bb", "a⟨U+200B⟩b"),
        ("\x85", "⟨U+0085⟩"),
        ("", "∅"),
        ("##ing", "##ing"),  # word-piece markers stay as the tokenizer wrote them
        ("▁the", "▁the"),
    ],
)
def test_readable_text(text, shown):
    assert readable_text(text) == shown


def test_string_tokens_keep_their_exact_form_in_the_tooltip():
    labels = readable_tokens(["Hi", " there", "\n"])
    assert labels.labels == ["Hi", "␣there", "↵"]
    assert labels.titles == ["'Hi'", "' there'", "'\\n'"]


def test_bytes_show_characters_and_continuations():
    data = "a é€😀\n".encode()
    got = byte_labels(data)
    c = CONTINUATION
    assert got.labels == ["a", "␣", "é", c, "€", c, c, "😀", c, c, c, "↵"]
    assert len(got.labels) == len(data) == len(got.titles)
    assert got.titles[2] == "byte 0xc3 'é'"
    assert got.titles[3] == "byte 0xa9 (continues 'é')"


def test_invalid_utf8_bytes_are_shown_as_hex():
    got = readable_tokens(b"\xff\xc3(\x80")
    assert got.labels == ["\\xff", "\\xc3", "(", "\\x80"]
    assert got.titles[0] == "byte 0xff (not valid UTF-8 here)"


def test_bytearray_is_bytes():
    assert readable_tokens(bytearray(b"ab")).labels == ["a", "b"]


@pytest.mark.parametrize(("tokens", "match"), [("text", "list of strings"), (3, "list of strings")])
def test_tokens_must_be_strings_or_bytes(tokens, match):
    with pytest.raises(TypeError, match=match):
        readable_tokens(tokens)


def test_a_non_string_token_is_named():
    with pytest.raises(TypeError, match=r"tokens\[1\] must be a str, got int"):
        readable_tokens(["a", 5])
