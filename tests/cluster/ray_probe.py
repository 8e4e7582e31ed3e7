"""A Ray job (entry point) that reads a Delta table from the object store on every Ray node.

Submitted by the cluster test through the Ray Jobs API with this folder as its working dir.
One task per node (a STRICT_SPREAD placement group: never two on one node), each reading the
table from the bucket through delta-rs and counting its share of the rows (an integer key
modulo the number of nodes); prints one JSON line with what each task counted and where it
ran, so the test can prove the work crossed processes and nodes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from lake import io
from lake.settings import get_settings


@ray.remote(num_cpus=1)
def count_share(table: str, key: str, share: int, shares: int) -> dict[str, Any]:
    """Rows of the table whose integer `key` is `share` modulo `shares`, read on this node."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    settings = get_settings()  # the node's own: LAKEHOUSE_ENV comes with the job's runtime env
    delta = DeltaTable(io.path_of(settings, table), storage_options=io.storage_options(settings))
    keys = delta.to_pyarrow_dataset().to_table(columns=[key])[key]
    mine = pc.equal(pc.subtract(keys, pc.multiply(pc.divide(keys, shares), shares)), share)
    return {"node_id": ray.get_runtime_context().get_node_id(), "rows": pc.sum(mine).as_py() or 0}


def main(table: str, key: str) -> None:
    ray.init()  # inside a submitted job: the cluster that runs it
    nodes = [n for n in ray.nodes() if n["Alive"]]
    group = placement_group([{"CPU": 1}] * len(nodes), strategy="STRICT_SPREAD")
    ray.get(group.ready(), timeout=60)
    tasks = [
        count_share.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i)
        ).remote(table, key, i, len(nodes))
        for i in range(len(nodes))
    ]
    print("PROBE " + json.dumps({"nodes": len(nodes), "shares": ray.get(tasks)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
