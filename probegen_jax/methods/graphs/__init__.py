"""Graph and equivariant metanetworks: neural graphs with NG-GNN and NG-T (Kofinas et al. 2024),
invariant ScaleGMN (Kalogeropoulos et al. 2024) and NFN-HNP (Zhou et al. 2023).

Every method is a frozen spec (paper-size defaults, ``Spec.small()`` for small zoos) and
``learner(spec, zoo, num_outputs) -> Learner``; graph methods take a ``Zoo`` or a ``HeteroZoo``.
"""

from probegen_jax.methods.graphs import ng_gnn, ng_transformer, nfn_hnp, scalegmn
from probegen_jax.methods.graphs.graph import GraphLayout, Graphs, GraphSpace, graph_space, layout_of, zoo_graphs
from probegen_jax.methods.graphs.ng_gnn import NGGNNSpec
from probegen_jax.methods.graphs.ng_transformer import NGTSpec
from probegen_jax.methods.graphs.nfn_hnp import NFNHNPSpec
from probegen_jax.methods.graphs.scalegmn import ScaleGMNSpec

# name -> (spec class, learner(spec, zoo, num_outputs), takes heterogeneous zoos)
GRAPH_METHODS = {
    "ng_gnn": (NGGNNSpec, ng_gnn.learner, True),
    "ng_t": (NGTSpec, ng_transformer.learner, True),
    "scalegmn": (ScaleGMNSpec, scalegmn.learner, True),
    "nfn_hnp": (NFNHNPSpec, nfn_hnp.learner, False),
}
METHOD_NAMES = {"ng_gnn": "NG-GNN", "ng_t": "NG-T", "scalegmn": "ScaleGMN", "nfn_hnp": "NFN-HNP"}

__all__ = ["GRAPH_METHODS", "METHOD_NAMES", "GraphLayout", "GraphSpace", "Graphs", "NFNHNPSpec", "NGGNNSpec",
           "NGTSpec", "ScaleGMNSpec", "graph_space", "layout_of", "ng_gnn", "ng_transformer", "nfn_hnp", "scalegmn",
           "zoo_graphs"]
