"""A Ray cluster of two nodes on this machine, for the cluster test: a head and a second node, each
with its own temp folder and resources, every socket on 127.0.0.1, token authentication from the
environment (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH). Prints the address and node ids as one JSON
line, then runs until SIGTERM and shuts both nodes down.

Run by path with the nodes' Python: it imports Ray only, never medical_assets. Ray's `ray start`
refuses a second node while RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (what keeps Ray on loopback), and
without it rewrites 127.0.0.1 to the machine's address and listens on every interface; Ray's test
cluster (`ray.cluster_utils.Cluster`) starts the same node processes with the address we give.

    python ray_two_nodes.py PORT HEAD_TEMP_DIR SECOND_TEMP_DIR
"""

import json
import os
import signal
import sys
import threading

from ray.cluster_utils import Cluster


def main() -> None:
    port, head_temp, second_temp = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    # The cluster notes its address in $RAY_TMPDIR/ray: the caller points RAY_TMPDIR at its own folder.
    os.makedirs(os.path.join(os.environ["RAY_TMPDIR"], "ray"), exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    memory = 400 * 1024 * 1024
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args=dict(
            num_cpus=1, gcs_server_port=port, node_ip_address="127.0.0.1", temp_dir=head_temp,
            include_dashboard=False, object_store_memory=memory,
        ),
    )
    try:
        second = cluster.add_node(
            num_cpus=1, resources={"second_node": 1}, node_ip_address="127.0.0.1", temp_dir=second_temp, object_store_memory=memory
        )
        cluster.wait_for_nodes()
        print(json.dumps({"address": cluster.address, "head": cluster.head_node.node_id, "second": second.node_id}), flush=True)
        stop.wait()
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
