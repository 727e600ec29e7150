"""RESULTS.md sections: each benchmark replaces its own and keeps the rest."""

from __future__ import annotations

from multihead_apps.bench import results


def test_write_section_replaces_only_attention(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\n## Models\n\nkeep me\n\n## Attention\n\nold\n\n## Zoo\n\nzoo\n")
    results.write_section(path, "## Attention\n\nnew\n")
    text = path.read_text()
    assert "old" not in text and "new" in text
    assert text.index("## Models") < text.index("## Attention") < text.index("## Zoo")
    assert "keep me" in text and "zoo" in text
    results.write_section(path, "## Attention\n\nnewer\n")
    assert path.read_text().count("## Attention") == 1


def test_write_section_creates_file(tmp_path):
    path = tmp_path / "sub" / "RESULTS.md"
    results.write_section(path, "## Attention\n\nx\n")
    assert path.read_text() == "# Benchmark results\n\n## Attention\n\nx\n"


def test_write_section_replaces_a_subsection_and_ignores_headings_in_code(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(
        "# R\n\n## Models\n\n### LM — old verdict\n\nold\n\n```python\n# a comment\n```\n\n"
        "tail of LM\n\n### Other\n\nkept\n\n## Next\n\nkept too\n"
    )
    results.write_section(path, "### LM — new verdict\n\nnew\n", heading="### LM")
    text = path.read_text()
    assert "old" not in text and "# a comment" not in text and "tail of LM" not in text
    assert text.index("## Models") < text.index("### LM — new verdict") < text.index("### Other")
    assert "kept\n" in text and "kept too" in text
