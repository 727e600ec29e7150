"""``multihead generate``: every argument checked before anything is written; prompts are
bytes."""

import pytest

from multihead.cli import main
from multihead.models import DecoderLM

TINY = ["--preset", "tiny", "--quiet", "--d-model", "32", "--eval-tokens", "256"]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    corpus = tmp / "code.py"
    corpus.write_text("def add(a, b):\n    return a + b\n\n" * 300)
    out = tmp / "run"
    assert main(["train", *TINY, "--steps", "1", "--out", str(out), "--data", str(corpus)]) == 0
    return str(out)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--stop", "999"], "--stop 999 is outside this checkpoint's vocabulary"),
        (["--stop", "-1"], "--stop: stop_tokens entries must be an integer >= 0, got -1"),
        (["--max-new-tokens", "-1"], "--max-new-tokens must be an integer >= 0, got -1"),
        (["--temperature", "nan"], "--temperature: temperature must be a finite number"),
        (["--top-k", "0"], "--top-k: top_k must be an integer >= 1, got 0"),
        (["--top-p", "1.5"], "--top-p: top_p must be a finite number in (0, 1]"),
        (["--max-new-tokens", "100"], "exceeds max_seq_len=64"),  # found by the stream
        (["--compile", "--no-cache"], "--compile compiles the cached decode step"),
    ],
)
def test_bad_arguments_fail_before_anything_is_written(text_run, capsys, flags, message):
    capsys.readouterr()
    prompt = ["--prompt", "def add(a, b):\n    return"]
    assert main(["generate", "--checkpoint", text_run, *prompt, *flags]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err


def test_a_prompt_that_is_not_utf8_is_given_to_the_model_as_its_bytes(
    text_run, capsys, monkeypatch
):
    seen = []
    real = DecoderLM.stream

    def spy(self, prompts, **kw):
        seen.append(prompts)
        return real(self, prompts, **kw)

    monkeypatch.setattr(DecoderLM, "stream", spy)
    capsys.readouterr()
    raw = b"caf\xe9 "  # Latin-1 bytes, as a shell passes them: surrogate escapes (PEP 383)
    prompt = raw.decode("utf-8", errors="surrogateescape")
    argv = ["generate", "--checkpoint", text_run, "--prompt", prompt, "--max-new-tokens", "2"]
    assert main(argv) == 0
    assert seen == [[list(raw)]]
    assert capsys.readouterr().out.startswith("caf\ufffd ")  # shown as UTF-8 would show it
    assert main([*argv[:3], "--prompt", "\ud800x"]) == 2  # not bytes: a lone surrogate
    assert "--prompt holds a character that is not text" in capsys.readouterr().err


def test_a_damaged_checkpoint_is_refused_unless_no_verify(tmp_path, text_run, capsys):
    import shutil

    from multihead.checkpoint import resolve_step_dir

    run = tmp_path / "run"
    shutil.copytree(text_run, run)
    weights = resolve_step_dir(run) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the last tensor's bytes: still parses
    weights.write_bytes(bytes(data))
    argv = ["generate", "--checkpoint", str(run), "--prompt", "def", "--max-new-tokens", "1"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "SHA-256" in err
    assert main([*argv, "--no-verify"]) == 0


def test_compile_prints_what_eager_decoding_prints(text_run, capsys):
    flags = ["--prompt", "def add(", "--temperature", "0", "--max-new-tokens", "6"]
    capsys.readouterr()
    assert main(["generate", "--checkpoint", text_run, *flags]) == 0
    eager = capsys.readouterr().out
    assert main(["generate", "--checkpoint", text_run, *flags, "--compile"]) == 0
    assert capsys.readouterr().out == eager
