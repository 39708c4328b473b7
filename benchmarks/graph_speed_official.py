"""Worker for ``benchmarks/graph_speed.py``: training epochs of the reference NG-GNN (the Neural
Graphs code, mkofinas/neural-graphs, model ``nn.gnn.GNNForClassification`` with PNA) in its own
Python environment, driven over stdin/stdout so that both implementations are timed in one run.

Not meant to be run by hand: ``graph_speed.py --official-code DIR --official-python PY`` starts it
as ``PY benchmarks/graph_speed_official.py --code DIR --data ZOO.npz ...``. It reads the model
configuration from the checkout's own ``experiments/inr_classification/configs/model/pna.yaml``
(overriding only the sizes) and builds the model with hydra, as the reference training script does.
The zoo comes as the reference dataset's tensors: per layer weights ``[N, in, out, 1]`` and biases
``[N, out, 1]``, labels ``[N]``. Each line ``epoch`` on stdin runs one epoch (Adam with a cosine
schedule, batch order given in the npz) and answers one JSON line, ``warmup`` runs one step;
``quit`` ends it.

Needs torch (CPU is enough), torch_geometric 2.3 (later releases moved ``utils.trim_to_layer``,
which the reference code imports), hydra-core, random-fourier-features-pytorch, einops, numpy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--code", required=True, help="checkout of the reference code")
    p.add_argument("--data", required=True, help="npz written by graph_speed.py")
    p.add_argument("--d-hid", type=int, required=True)
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--fourier-dim", type=int, required=True)
    p.add_argument("--sigma", type=float, required=True)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    args = p.parse_args()

    # random-fourier-features-pytorch imports torchvision for an image loader it does not use here;
    # PyPI's torchvision does not load beside a CPU build of torch, so it is stood in for.
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        sys.modules["torchvision"] = types.ModuleType("torchvision")
    sys.path.insert(0, args.code)
    import hydra
    import numpy as np
    import torch
    import torch_geometric
    from omegaconf import OmegaConf

    data = np.load(args.data)
    depth = int(data["depth"])
    weights = [torch.from_numpy(data[f"w{i}"]) for i in range(depth)]
    biases = [torch.from_numpy(data[f"b{i}"]) for i in range(depth)]
    labels = torch.from_numpy(data["labels"].astype(np.int64))
    order = data["order"]
    layout = [weights[0].shape[1]] + [w.shape[2] for w in weights]

    model_cfg = OmegaConf.load(Path(args.code) / "experiments/inr_classification/configs/model/pna.yaml")
    cfg = OmegaConf.create({"data": {"num_classes": 10, "inr_model": None, "stats": None}, "model": model_cfg})
    cfg.model.d_hid = args.d_hid
    cfg.model.gnn_backbone.num_layers = args.layers
    cfg.model.graph_constructor.sin_emb_dim = args.fourier_dim
    cfg.model.graph_constructor.inp_factor = args.sigma
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model, layer_layout=layout)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=len(order))
    print(json.dumps({"ready": True, "torch": torch.__version__, "torch_geometric": torch_geometric.__version__,
                      "threads": torch.get_num_threads(), "params": sum(q.numel() for q in model.parameters())}),
          flush=True)

    def epoch(steps: int | None = None) -> float:
        model.train()
        losses = []
        for idx in order[:steps]:
            idx = torch.from_numpy(idx)
            inputs = (tuple(w[idx] for w in weights), tuple(b[idx] for b in biases))
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs), labels[idx])
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        return float(np.mean(losses))

    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command in ("epoch", "warmup"):
            start = time.perf_counter()
            loss = epoch(1 if command == "warmup" else None)
            print(json.dumps({"seconds": time.perf_counter() - start, "loss": loss}), flush=True)


if __name__ == "__main__":
    main()
