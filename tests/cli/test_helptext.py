"""A command line that explains itself: every flag of every subcommand has help, field help
comes from the config docstrings, and ``train --help`` shows the values the run will use."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from multihead.cli import build_parser, main
from multihead.cli.helptext import field_docs, plain
from multihead.models import DecoderConfig
from multihead.train import PRESETS, TrainConfig, preset


def parsers(
    parser: argparse.ArgumentParser, name: str = "multihead"
) -> list[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every subcommand's parser under it, with their command names."""
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                found += parsers(p, f"{name} {sub}")
    return found


def test_every_flag_of_every_subcommand_has_help():
    walked = parsers(build_parser())
    names = {name for name, _ in walked}
    assert {"multihead train", "multihead generate", "multihead agent train"} <= names
    missing = []
    for name, parser in walked:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [
                    f"{name} {a.dest}" for a in action._choices_actions if not (a.help or "")
                ]
            elif not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"flags without help: {missing}"


def test_no_help_shows_a_meaningless_default(capsys):
    for name, parser in parsers(build_parser()):
        text = parser.format_help()
        assert "(default: None)" not in text, name
        assert "(default: [])" not in text, name
        assert "(default: False)" not in text, name


def test_every_config_field_is_documented_once():
    for cls in (DecoderConfig, TrainConfig):
        docs = field_docs(cls)
        assert {f.name for f in dataclasses.fields(cls)} == set(docs), cls.__name__
        assert all(text and "``" not in text and ":class:" not in text for text in docs.values())
    assert field_docs(TrainConfig)["lr"] == field_docs(TrainConfig)["min_lr"]
    assert field_docs(DecoderConfig)["tie_embeddings"].startswith("the output head reuses")
    assert plain(":func:`~multihead.train.train`  ``x``\n  y") == "train x y"


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps help to the terminal width


def train_help(capsys, *args: str) -> dict[str, str]:
    """``train ... --help``'s entries: each option's strings -> its help (on one line: run
    with the ``wide`` fixture)."""
    assert main(["train", *args, "--help"]) == 0
    entries: dict[str, str] = {}
    key = None
    for line in capsys.readouterr().out.splitlines():
        m = re.match(r"  (-[^ ]+(?:, -[^ ]+)*)(?: [A-Z|{][^ ]*)?(?:  +(.*))?$", line)
        if m:
            key = m.group(1)
            entries[key] = m.group(2) or ""
        elif key and line.startswith("    "):
            entries[key] += " " + line.strip()
        else:
            key = None
            if line.strip():
                entries.setdefault("", "")
                entries[""] += line + "\n"  # titles and prose
    return entries


def shown_default(entries: dict[str, str], flag: str) -> str:
    text = next(v for k, v in entries.items() if flag in k.split(", "))
    m = re.search(r"\(default: ([^()]*?)[;,)]", text)
    assert m, f"{flag} shows no default: {text!r}"
    return m.group(1)


def parse_shown(shown: str, flag: str, kind: str):
    if shown == flag:
        return True
    if shown == "--no-" + flag[2:]:
        return False
    if shown == "none":
        return None
    return {"int": int, "float": float, "str": str}[kind](shown)


@pytest.mark.parametrize("name", PRESETS)
def test_train_help_shows_the_chosen_presets_values(capsys, wide, name):
    text = train_help(capsys, "--preset", name)
    assert f"defaults: preset {name}" in text[""]
    model, training = preset(name)
    for cfg in (model, training):
        for f in dataclasses.fields(cfg):
            kind = str(f.type).replace(" ", "").removesuffix("|None")
            if kind not in ("int", "float", "str", "bool"):
                continue
            flag = "--" + f.name.replace("_", "-")
            assert parse_shown(shown_default(text, flag), flag, kind) == getattr(cfg, f.name), flag


def test_train_help_without_a_preset_shows_tiny_and_resuming_the_checkpoints(
    tmp_path, capsys, wide
):
    text = train_help(capsys)
    assert "defaults: preset tiny" in text[""] and shown_default(text, "--steps") == "200"
    assert shown_default(text, "--preset") == "tiny"
    assert shown_default(text, "--d-model") == "64"
    small = train_help(capsys, "--help", "--preset", "small")  # the order does not matter
    assert shown_default(small, "--steps") == "5000"
    out = tmp_path / "run"
    argv = ["--task", "copy", "--seq-len", "9", "--d-model", "32", "--steps", "1"]
    assert main(["train", "--quiet", "--eval-tokens", "64", *argv, "--out", str(out)]) == 0
    capsys.readouterr()
    resumed = train_help(capsys, "--resume", str(out))
    assert "defaults: the checkpoint" in resumed[""]
    assert shown_default(resumed, "--d-model") == "32"
    assert shown_default(resumed, "--task") == "copy"
