"""Train the small GPT-2-architecture models that ship with fpgpt (``tiny`` and ``micro``).

Data: the CPython documentation topics in ``pydoc_data.topics`` (part of the standard library, so
the run needs no download), encoded as bytes with one ``<|endoftext|>`` (id 256) after each topic.
The last 5 % of that token stream is held out for the validation loss. With ``--docstrings``
(off by default) the standard library's docstrings (:func:`docstring_tokens`) are appended to
the training split only, so the validation text stays the topics' tail. A 1600-step tiny run
with them (no dropout) reached validation 1.50 nats/byte, worse than the shipped 1.34, and its
greedy text still loops, so the shipped recipe does not use them.

For ``tiny`` the text is first normalised by :func:`normalise` (``micro`` keeps the raw text, so
its shipped checkpoint stays reproducible): every line loses its indentation and runs of spaces
become one space; lines of punctuation only (``****`` underlines, rules), table rows and borders
(lines starting with ``|`` or ``+``) and interactive-session lines (``>>>``, ``...``) are dropped;
runs of blank lines become one. Why: the docs indent code, grammar and definitions by 3 to 20+
spaces, and a small model trained on the raw text learns that whitespace follows whitespace, so
its greedy continuation of a prompt collapses into a run of spaces. The words are unchanged.

The model is transformers' ``GPT2LMHeadModel`` (``gelu_new``, tied LM head, dropout per size), trained
on CPU with a fixed seed and a fixed step count, and saved as a Hugging Face checkpoint
(config.json + model.safetensors) with an ``fpgpt_tokenizer.json`` marker and a README.md that
records the run.

Usage::

    .venv/bin/python scripts/train_tiny.py --size tiny
    .venv/bin/python scripts/train_tiny.py --size micro
    .venv/bin/python scripts/train_tiny.py --size tiny --measure 20   # steps/s only, saves nothing
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import shlex
import sys
import sysconfig
import time
from pathlib import Path

import re

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from fpgpt.models.spec import get_spec

EOT_ID = 256
REPO = Path(__file__).resolve().parents[1]

# Per-size defaults, sized from measured steps/s (--measure) so that a run fits in 12 minutes on 2
# CPU cores shared with other jobs: tiny at batch 16 ran 3.3 steps/s with 2 threads on idle cores,
# but 0.36 steps/s with 2 threads and 0.79 with 1 thread while other jobs loaded the cores (two
# threads stall on each other there), hence --threads 1 for the shipped runs. The README written
# next to each model records the figures of the run that produced it.
DEFAULTS = {
    "tiny": dict(steps=1600, batch=12, lr=5e-3, normalise=True, docstrings=False, dropout=0.0),
    "micro": dict(steps=2000, batch=16, lr=5e-3, normalise=False, docstrings=False, dropout=0.0),
}

_RULE = re.compile(r"^[\W_]+$")                # punctuation only: ****, ====, +---+
_TABLE = re.compile(r"^[|+]")                  # a table row or border
_SESSION = re.compile(r"^(>>>|\.\.\.)( |$)")   # an interactive-session line


def normalise(text: str) -> str:
    """One documentation topic with indentation, rules, tables and sessions removed (see top)."""
    out: list[str] = []
    for line in text.split("\n"):
        line = " ".join(line.split())
        if line and (_RULE.match(line) or _TABLE.match(line) or _SESSION.match(line)):
            continue
        if not line and (not out or not out[-1]):
            continue                            # no leading or repeated blank lines
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def corpus_tokens(normalised: bool) -> np.ndarray:
    """Every documentation topic as bytes, each followed by end-of-text, in the module's order."""
    import pydoc_data.topics as topics

    ids: list[int] = []
    for text in topics.topics.values():
        ids.extend((normalise(text) if normalised else text).encode("utf-8"))
        ids.append(EOT_ID)
    return np.asarray(ids, dtype=np.int64)


MIN_DOCSTRING = 40   # characters; shorter ones ("Return self.") add repetition, not language


def _docstrings(node):
    """Docstrings of a module and its classes and functions, depth first in source order."""
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        doc = ast.get_docstring(node)
        if doc:
            yield doc
    for child in ast.iter_child_nodes(node):
        yield from _docstrings(child)


def docstring_tokens() -> np.ndarray:
    """The standard library's docstrings as bytes, each normalised and followed by end-of-text.

    Source: every ``*.py`` file directly in the interpreter's ``Lib`` folder
    (``sysconfig.get_paths()["stdlib"]``, packages not descended into), in sorted file-name order;
    in each file the module, class and function docstrings in source order (``ast``, the files
    are parsed, not imported). Docstrings shorter than ``MIN_DOCSTRING`` characters and exact
    repeats of an earlier one are skipped. Why: it is English about Python present on every
    install, and roughly triples the text, which cuts the overfitting of the topics alone.
    """
    lib = Path(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    ids: list[int] = []
    for path in sorted(lib.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for doc in _docstrings(tree):
            doc = normalise(doc)
            if len(doc) < MIN_DOCSTRING or doc in seen:
                continue
            seen.add(doc)
            ids.extend(doc.encode("utf-8"))
            ids.append(EOT_ID)
    return np.asarray(ids, dtype=np.int64)


def make_model(spec, dropout: float = 0.0) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=spec.vocab, n_positions=spec.n_ctx, n_embd=spec.d_model, n_layer=spec.n_layer,
        n_head=spec.n_head, n_inner=spec.d_ff, activation_function="gelu_new",
        layer_norm_epsilon=spec.ln_eps, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
        bos_token_id=EOT_ID, eos_token_id=EOT_ID, tie_word_embeddings=True,
    )
    return GPT2LMHeadModel(config)


@torch.no_grad()
def mean_loss(model, data: np.ndarray, ctx: int, max_windows: int) -> float:
    """Mean next-token cross-entropy (nats/token) over non-overlapping windows of ``data``."""
    model.eval()
    n = min((len(data) - 1) // ctx, max_windows)
    total, count = 0.0, 0
    for start in range(0, n, 16):
        rows = range(start, min(start + 16, n))
        x = torch.from_numpy(np.stack([data[i * ctx:(i + 1) * ctx] for i in rows]))
        y = torch.from_numpy(np.stack([data[i * ctx + 1:(i + 1) * ctx + 1] for i in rows]))
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 y.reshape(-1), reduction="sum")
        total += loss.item()
        count += y.numel()
    model.train()
    return total / count


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def train(args) -> dict:
    spec = get_spec(args.size)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    data = corpus_tokens(args.normalise)
    n_val = len(data) // 20
    train_data, val_data = data[:-n_val], data[-n_val:]
    result_extra = dict(topic_tokens=len(data))
    if args.docstrings:
        # Appended to the training split only: the validation tail stays the same topics text,
        # so its loss compares with runs trained on the topics alone.
        doc_data = docstring_tokens()
        result_extra["doc_tokens"] = len(doc_data)
        train_data = np.concatenate([train_data, doc_data])
    ctx = spec.n_ctx

    model = make_model(spec, args.dropout)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    steps = args.measure or args.steps
    warmup = min(100, steps // 10 + 1)
    t0 = time.perf_counter()
    for step in range(steps):
        starts = rng.integers(0, len(train_data) - ctx - 1, size=args.batch)
        x = torch.from_numpy(np.stack([train_data[s:s + ctx] for s in starts]))
        y = torch.from_numpy(np.stack([train_data[s + 1:s + ctx + 1] for s in starts]))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, args.lr, warmup)
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            el = time.perf_counter() - t0
            print(f"step {step:5d}  loss {loss.item():.4f}  {el:7.1f} s  "
                  f"{(step + 1) / el:.2f} steps/s", flush=True)
    train_s = time.perf_counter() - t0
    result = dict(steps=steps, train_s=train_s, steps_per_s=steps / train_s,
                  tokens_seen=steps * args.batch * ctx, train_tokens=len(train_data),
                  val_tokens=len(val_data), **result_extra)
    if args.measure:
        print(json.dumps(result, indent=1))
        return result
    # Train loss on a fixed 64 windows from the start of the training split, validation on the
    # whole held-out tail: both deterministic, unlike the last batch's loss.
    result["train_loss"] = mean_loss(model, train_data, ctx, 64)
    result["val_loss"] = mean_loss(model, val_data, ctx, 10_000)
    save(model, spec, args, result)
    return result


# The README's description of the text, by the value of --normalise.
TEXT = {
    True: "normalised text (indentation removed, runs of spaces collapsed, underlines/rules, table "
          "rows and `>>>` session lines dropped: see `normalise` in the script)",
    False: "raw text",
}


def save(model, spec, args, result: dict) -> None:
    out = Path(args.out or REPO / "fpgpt" / "models" / "shipped" / spec.name)
    out.mkdir(parents=True, exist_ok=True)
    # Dropout is a training device: the saved config says 0 so that loading it for inference
    # (here or with transformers) needs no .eval() to be deterministic.
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        setattr(model.config, key, 0.0)
    model.save_pretrained(out, safe_serialization=True)
    for extra in ("generation_config.json",):
        (out / extra).unlink(missing_ok=True)   # not needed; keeps the shipped folder minimal
    (out / "fpgpt_tokenizer.json").write_text(
        json.dumps({"type": "byte", "eot_id": EOT_ID, "eot_token": "<|endoftext|>"}, indent=1) + "\n")
    (out / "model.safetensors").chmod(0o644)   # safetensors creates it owner-only
    size = (out / "model.safetensors").stat().st_size
    params = sum(p.numel() for p in model.parameters())
    command = "python " + " ".join(shlex.quote(a) for a in ["scripts/train_tiny.py", *sys.argv[1:]])
    ln2 = math.log(2)
    if args.docstrings:
        docs_note = " plus the standard library's docstrings"
        data_row = (
            f"{TEXT[args.normalise]}. Topics: {result['topic_tokens']:,} tokens (one per byte, plus "
            f"end-of-text after each topic), the last {result['val_tokens']:,} (5 %) held out for "
            f"validation. Docstrings (training only): {result['doc_tokens']:,} tokens, from every "
            f"`Lib/*.py` file of this Python (sorted by name, packages not descended into), module, "
            f"class and function docstrings in source order via `ast`, each normalised the same "
            f"way, those under {MIN_DOCSTRING} characters or repeating an earlier one skipped, "
            f"end-of-text after each: see `docstring_tokens` in the script")
    else:
        docs_note = ""
        data_row = (
            f"{TEXT[args.normalise]}: {result['train_tokens'] + result['val_tokens']:,} tokens (one "
            f"per byte, plus end-of-text after each topic); last {result['val_tokens']:,} (5 %) "
            f"held out")
    readme = f"""# fpgpt shipped model `{spec.name}`

A GPT-2-architecture model trained by `scripts/train_tiny.py` on the CPython documentation
topics (`pydoc_data.topics`, Python {sys.version.split()[0]}){docs_note}, byte-level tokens.

| | |
|---|---|
| architecture | GPT-2 (pre-LN, learned positions, tied LM head, gelu_new), {spec.n_layer} layers, {spec.n_head} heads, d_model {spec.d_model}, d_ff {spec.d_ff}, n_ctx {spec.n_ctx} |
| vocabulary | {spec.vocab}: ids 0..255 are bytes, {EOT_ID} is `<|endoftext|>` (see `fpgpt_tokenizer.json`) |
| parameters | {params:,} (tied embedding counted once) |
| model.safetensors | {size:,} bytes, float32 |
| data | {data_row} |
| training | {result['steps']} steps x batch {args.batch} x {spec.n_ctx} tokens = {result['tokens_seen']:,} tokens, AdamW (peak lr {args.lr}, warm-up + cosine to 10 %), dropout {args.dropout} (residual, embedding, attention; training only, config.json says 0), seed {args.seed} |
| time | {result['train_s']:.0f} s on {args.threads} CPU thread(s) of a 2-core machine shared with other jobs ({result['steps_per_s']:.2f} steps/s, torch {torch.__version__}) |
| train loss (64 fixed windows) | {result['train_loss']:.4f} nats/byte = {result['train_loss'] / ln2:.4f} bits/byte |
| validation loss (held-out 5 %) | {result['val_loss']:.4f} nats/byte = {result['val_loss'] / ln2:.4f} bits/byte |

Losses are per token; every token but the end-of-text markers is one byte.

Reproduce (from the repository root):

    {command}

Load it with `fpgpt.models.load_model("{spec.name}")`, or with transformers'
`GPT2LMHeadModel.from_pretrained` on this folder.
"""
    readme += "\n" + greedy_sample(model) + "\n"
    (out / "README.md").write_text(readme)
    print(json.dumps(result, indent=1))
    print(f"saved to {out}")


SAMPLE_PROMPTS = ("The assert statement", "The for statement", "A list comprehension")
SAMPLE_TOKENS = 100


@torch.no_grad()
def greedy_sample(model) -> str:
    """README section: greedy continuations of SAMPLE_PROMPTS (the first is `make demo`'s)."""
    model.eval()
    lines = [f"Greedy continuations, {SAMPLE_TOKENS} tokens each, as Python string literals:", ""]
    for text in SAMPLE_PROMPTS:
        prompt = torch.tensor([list(text.encode())])
        out = model.generate(prompt, max_new_tokens=SAMPLE_TOKENS, do_sample=False,
                             attention_mask=torch.ones_like(prompt), pad_token_id=EOT_ID)
        text = bytes(t for t in out[0].tolist() if t < 256).decode("utf-8", errors="replace")
        lines.append(f"    {text!r}")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(DEFAULTS), default="tiny")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--normalise", action=argparse.BooleanOptionalAction,
                   help="normalise the text first (default: yes for tiny, no for micro)")
    p.add_argument("--docstrings", action=argparse.BooleanOptionalAction,
                   help="add the standard library's docstrings to the training text "
                        "(default: no)")
    p.add_argument("--dropout", type=float, help="resid/embd/attn dropout during training (default 0)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="output folder (default fpgpt/models/shipped/<size>)")
    p.add_argument("--measure", type=int, default=0, metavar="N",
                   help="run N training steps, print steps/s, save nothing")
    args = p.parse_args(argv)
    for k, v in DEFAULTS[args.size].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    train(args)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
