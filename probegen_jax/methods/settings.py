"""What each method setting (a field of a method's spec) means, said once for every method that
has it: the command line's ``--help`` for ``train METHOD`` reads it, and the choices of settings
that take one of a few values."""

from __future__ import annotations

from collections.abc import Iterable

SETTINGS: dict[str, str] = {
    # probing
    "num_probes": "probes K passed through every network",
    "head_hidden": "width of the head's hidden layers",
    "head_layers": "linear layers in the head (ReLU between them)",
    "probe_seed": "seed of the fixed random probes (synthetic probing)",
    "response": "what the head reads of each network's outputs on the probes: raw outputs or their softmax",
    # feature baselines (StatNN, flat weights) and gradient-boosted trees
    "hidden": "width of the MLP head's hidden layers",
    "layers": "layers of the MLP head (SANE: of its encoder and of its decoder)",
    "max_iter": "boosting iterations of the gradient-boosted trees",
    "seed": "seed of the gradient-boosted trees",
    # NFN, NFT
    "channels": "channels of each equivariant layer (NFT: the token width, 2 x fourier_features with Fourier "
                "features)",
    "fourier_features": "random Fourier features encoding each input weight (0: none; 2x this many channels)",
    "fourier_scale": "standard deviation of the random Fourier features' frequencies",
    "fourier_seed": "seed of the random Fourier features",
    "io_embedding": "learned embeddings of the input and output neurons",
    "num_blocks": "weight-space self-attention blocks",
    "heads": "attention heads (SANE: of its transformer)",
    "ff_factor": "width of each block's feed-forward layer, as a multiple of the channels",
    "share_projections": "one query/key/value projection for every tensor (dense networks only)",
    "num_latents": "latent vectors of the Perceiver pooling",
    "latent_dim": "width of the Perceiver's latents",
    "cross_heads": "heads of the Perceiver's cross-attention",
    "cross_dim_head": "width of each cross-attention head",
    "latent_heads": "heads of the Perceiver's latent self-attention",
    "latent_dim_head": "width of each latent self-attention head",
    "self_per_cross": "latent self-attention layers after the cross-attention",
    "perceiver_ff_mult": "width of the Perceiver's feed-forward layers, as a multiple of its widths",
    # graph metanetworks (NG-GNN, NG-T, ScaleGMN)
    "d_hid": "width of the node and edge features of every message-passing layer",
    "num_layers": "message-passing (NG-T: transformer) layers",
    "fourier_dim": "random Fourier features of each weight, bias and positional input",
    "fourier_sigma": "standard deviation of the random Fourier features' frequencies",
    "d_node": "width of the node features",
    "d_edge": "width of the edge features",
    "d_attn": "width of the attention's queries and keys",
    "d_node_hid": "hidden width of the node update MLPs",
    "d_edge_hid": "hidden width of the edge update MLPs",
    "d_out_hid": "hidden width of the readout MLP",
    "d_mlp": "hidden width of the message and update MLPs",
    "d_rho": "hidden width of the symmetry-invariant MLPs",
    "symmetry": "the activation's symmetry the layers respect: sign (sine, tanh) or scale (ReLU)",
    # ProbeX and dense experts
    "layer": "the weight matrix read (default: chosen on validation)",
    "rank": "rank of the low-rank projections (r_U = r_V = r_T)",
    "relu": "a ReLU on the projected probe responses",
    "normalize": "subtract the train mean matrix and divide by one scale (auto: off for PyTorch-layout zoos)",
    "center": "subtract the train mean matrix when normalising",
    "layout": "how the zoo stores its tensors (auto: as the zoo says)",
    # SANE
    "token_size": "weights per token",
    "window": "tokens in each training window",
    "d_model": "width of the transformer",
    "latent": "width of each token's embedding",
    "ignore_norm": "leave BatchNorm layers out of the tokens",
}


def _symmetries() -> list[str]:
    from probegen_jax.methods.graphs.scalegmn import SYMMETRIES

    return list(SYMMETRIES)


def _responses() -> list[str]:
    from probegen_jax.methods.probing.probegen import RESPONSES

    return sorted(RESPONSES)


_CHOICES = {"response": _responses, "symmetry": _symmetries, "normalize": lambda: ["auto", "on", "off"],
            "layout": lambda: ["auto", "library", "torch"]}


def setting_choices(names: Iterable[str] | None = None) -> dict[str, list[str]]:
    """The values allowed for settings that take one of a few names (of ``names`` alone: only
    their own method families are imported)."""
    wanted = _CHOICES if names is None else [n for n in names if n in _CHOICES]
    return {name: _CHOICES[name]() for name in wanted}
