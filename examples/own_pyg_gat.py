"""A GAT in plain PyG over the project's Neo4j stores and sampler (README: "Use it from your own PyG code").

    python loaders/load_into_neo4j.py --dataset cora     # once
    python examples/own_pyg_gat.py [--dataset cora] [--epochs 3]

Connection: NEO4J_URI/NEO4J_USER/NEO4J_PASSWORD, else the project's local server (jobs/neo4j.sh).
"""
import argparse

import src  # noqa: F401  before torch: its large tensors on huge pages (src/core/huge_pages.py)
import torch
import torch.nn.functional as F
from torch_geometric.loader import NodeLoader
from torch_geometric.nn import GAT

from src.client import connect
from src.feature_store import Neo4jFeatureStore
from src.graph_sampler import Neo4jNeighborSampler
from src.graph_store import Neo4jGraphStore
from src.neo4jdb.load.records import require_loaded

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--dataset", default="cora", help="a dataset loaded into Neo4j (default: %(default)s)")
p.add_argument("--epochs", type=int, default=3, help="training epochs (default: %(default)s)")
args = p.parse_args()

with connect() as client:
    record = require_loaded(client, args.dataset)  # names, sizes and feature encoding of the dataset
    feature_store = Neo4jFeatureStore.from_record(client, record)
    graph_store = Neo4jGraphStore(client, record.schema, record.num_nodes)
    sampler = Neo4jNeighborSampler(client, record.schema, [10, 10], seed=0)
    s = record.schema  # the dataset's label and property names (validated identifiers)
    train_ids = client.read_tx(lambda tx: tx.run(
        f"MATCH (n:{s.label}) WHERE n.{s.split_prop} = $split RETURN n.{s.id_prop} AS id", split="train").value("id"))
    loader = NodeLoader((feature_store, graph_store), sampler, input_nodes=torch.tensor(sorted(train_ids)),
                        batch_size=64, shuffle=True)
    model = GAT(record.num_features, 32, num_layers=2, out_channels=record.num_classes, heads=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(1, args.epochs + 1):
        total, correct, seen = 0.0, 0, 0
        for batch in loader:
            x = batch.x.to_dense() if batch.x.is_sparse else batch.x  # sparse-stored rows arrive as COO
            out = model(x, batch.edge_index)[:batch.batch_size]
            y = batch.y[:batch.batch_size]
            loss = F.cross_entropy(out, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            correct += int((out.argmax(-1) == y).sum())
            seen += len(y)
        print(f"epoch {epoch}: loss {total / seen:.4f}, train acc {correct / seen:.4f}")
