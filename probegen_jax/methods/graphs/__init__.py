"""Graph and equivariant metanetworks: neural graphs with NG-GNN and NG-T (Kofinas et al. 2024),
invariant ScaleGMN (Kalogeropoulos et al. 2024), NFN-HNP (Zhou et al. 2023) and NFT (Zhou et al. 2023).

Every method is a frozen spec (paper-size defaults, ``Spec.small()`` for small zoos) and
``learner(spec, zoo, num_outputs) -> Learner``; graph methods take a ``Zoo`` or a ``HeteroZoo``.
"""

from probegen_jax.methods.graphs import nfn_hnp, nft, ng_gnn, ng_transformer, scalegmn
from probegen_jax.methods.graphs.graph import (
    GraphLayout,
    Graphs,
    GraphSpace,
    graph_constants,
    graph_space,
    layout_of,
    zoo_graphs,
)
from probegen_jax.methods.graphs.nfn_hnp import NFNHNPSpec
from probegen_jax.methods.graphs.nft import NFTSpec
from probegen_jax.methods.graphs.ng_gnn import NGGNNSpec
from probegen_jax.methods.graphs.ng_transformer import NGTSpec
from probegen_jax.methods.graphs.scalegmn import ScaleGMNSpec

# name -> (spec class, learner(spec, zoo, num_outputs, constants), prepare(zoo, train_indices), heterogeneous)
GRAPH_METHODS = {
    "ng_gnn": (NGGNNSpec, ng_gnn.learner, graph_constants, True),
    "ng_t": (NGTSpec, ng_transformer.learner, graph_constants, True),
    "scalegmn": (ScaleGMNSpec, scalegmn.learner, graph_constants, True),
    "nfn_hnp": (NFNHNPSpec, nfn_hnp.learner, nfn_hnp.hnp_constants, False),
    "nft": (NFTSpec, nft.learner, nfn_hnp.hnp_constants, False),
}
METHOD_NAMES = {"ng_gnn": "NG-GNN", "ng_t": "NG-T", "scalegmn": "ScaleGMN (invariant)", "nfn_hnp": "NFN-HNP",
                "nft": "NFT"}
DESCRIPTIONS = {
    "ng_gnn": "NG-GNN: PNA message passing over neural graphs (Kofinas et al. 2024)",
    "ng_t": "NG-T: relational transformer over neural graphs (Kofinas et al. 2024)",
    "scalegmn": "ScaleGMN: graph metanetwork invariant to permutations and activation scalings (invariant form)",
    "nfn_hnp": "NFN-HNP: neural functional equivariant to hidden-neuron permutations",
    "nft": "NFT: neural functional Transformer, weight-space self-attention equivariant to hidden-neuron permutations",
}


def _register() -> None:
    from probegen_jax.methods.registry import Method, register

    for name, (spec_type, make, prepare, hetero) in GRAPH_METHODS.items():
        register(Method(
            name, DESCRIPTIONS[name], spec_type,
            learner=lambda spec, zoo, task, constants, make=make: make(spec, zoo, task.num_outputs, constants),
            prepare=lambda spec, zoo, train_indices, train_targets, task, prepare=prepare: prepare(zoo, train_indices),
            heterogeneous=hetero))


_register()

__all__ = [
    "GRAPH_METHODS",
    "METHOD_NAMES",
    "GraphLayout",
    "GraphSpace",
    "Graphs",
    "NFNHNPSpec",
    "NFTSpec",
    "NGGNNSpec",
    "NGTSpec",
    "ScaleGMNSpec",
    "graph_constants",
    "graph_space",
    "layout_of",
    "nfn_hnp",
    "nft",
    "ng_gnn",
    "ng_transformer",
    "scalegmn",
    "zoo_graphs",
]
