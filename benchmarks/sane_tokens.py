"""SANE on a ResNet-18-sized network: tokenise it (~11.7M parameters, tens of thousands of tokens)
and embed it in haloed windows, reporting tokens per second and peak memory.

    python benchmarks/sane_tokens.py                      # token size 289, window 256, halo 32
    python benchmarks/sane_tokens.py --d-model 256 --latent 64

The network has ResNet-18's 20 convolutions (shortcut projections included) and its 1000-way
classifier, in forward order, with biases; BatchNorm is folded away (it adds no rows). The SANE
model is freshly initialised: the cost of embedding does not depend on training.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_description, median_seconds  # noqa: E402

from probegen_jax.methods.sane.embed import encode_sequence  # noqa: E402
from probegen_jax.methods.sane.model import SANEConfig, make_sane  # noqa: E402
from probegen_jax.methods.sane.tokens import token_layout, tokenize  # noqa: E402


def resnet18_shapes(num_classes: int = 1000) -> dict:
    """Kernel shapes ``[kh, kw, in, out]`` of ResNet-18's convolutions and classifier, forward order."""
    convs = [(7, 3, 64)]
    c = 64
    for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            first = block == 0
            convs += [(3, c, width), (3, width, width)]
            if first and (stride != 1 or c != width):
                convs.append((1, c, width))
            c = width
    shapes = {f"conv{i}": {"kernel": (k, k, cin, cout), "bias": (cout,)} for i, (k, cin, cout) in enumerate(convs)}
    shapes["dense0"] = {"kernel": (c, num_classes), "bias": (num_classes,)}
    return shapes


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--token-size", type=int, default=289)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--halo", type=int, default=32)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    shapes = resnet18_shapes()
    keys = jax.random.split(jax.random.key(0), len(shapes))
    params = {name: {"kernel": 0.02 * jax.random.normal(k, s["kernel"]), "bias": jnp.zeros(s["bias"])}
              for k, (name, s) in zip(keys, shapes.items(), strict=True)}
    num_params = sum(a.size for a in jax.tree.leaves(params))
    layout = token_layout(params, args.token_size)
    cfg = SANEConfig(token_size=args.token_size, window=args.window, d_model=args.d_model, latent=args.latent,
                     encoder_layers=args.layers, decoder_layers=args.layers).for_layout(layout)
    model = make_sane(cfg)
    sane_params = model.init(jax.random.key(1))
    positions = jnp.asarray(layout.positions())
    tok = jax.jit(lambda p: tokenize(p, layout))
    emb = jax.jit(lambda t: encode_sequence(model, sane_params, t, positions, halo=args.halo).mean(0))
    tokens = tok(params)
    t_tok = median_seconds(lambda: tok(params), repeats=args.repeats)
    t_emb = median_seconds(lambda: emb(tokens), repeats=args.repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = layout.num_tokens
    print(f"# SANE on a ResNet-18-sized network\n\n{machine_description()}\n")
    print(f"{num_params:,} parameters -> {n:,} tokens of size {args.token_size} ({len(layout.layers)} layers); "
          f"SANE d_model {args.d_model}, latent {args.latent}, {args.layers}+{args.layers} blocks, window "
          f"{args.window}, halo {args.halo}\n")
    print("| step | median s | tokens / s |\n|---|---|---|")
    print(f"| tokenise | {t_tok:.3f} | {n / t_tok:,.0f} |")
    print(f"| embed (haloed windows) | {t_emb:.3f} | {n / t_emb:,.0f} |")
    print(f"\npeak resident memory {peak:,.0f} MiB")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)")
