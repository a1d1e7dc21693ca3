"""What a sweep may run on: this machine's CUDA devices, a cluster's node types, and whether a trial's node
really gives it the GPU Ray assigned.

Why: on an autoscaling cluster `ray.cluster_resources()` counts only the nodes that are up, so a sweep sized
from it at start saw no GPUs and ran every trial on the head's CPU. The plan is therefore made for the GPUs the
sweep may use (`--num-gpus`), checked against the node types that can provide them, and a trial that was
assigned a GPU but sees no CUDA device stops with an error instead of training on the node's CPU unnoticed.
torch, yaml and Ray are imported where they are needed.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lth_ray.core.spec.config import ConfigError

BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")  # what `ray up` leaves on the head for its autoscaler


@dataclass(frozen=True)
class NodeType:
    """A kind of node trials can run on: its logical CPUs and GPUs and how many of it may be up."""

    name: str
    cpus: float
    gpus: float
    max_workers: int


@dataclass(frozen=True)
class NodeTypes:
    """The node types a sweep can be placed on, and where that was learnt (for messages)."""

    source: str
    types: tuple[NodeType, ...]
    complete: bool  # False: only the nodes up now (an autoscaler may add others)

    @property
    def most_gpus(self) -> float:
        """The GPUs all node types together may scale to."""
        return sum(t.gpus * t.max_workers for t in self.types)

    def describe(self) -> str:
        return ", ".join(f"{t.name}: {t.cpus:g} CPU {t.gpus:g} GPU x {t.max_workers}" for t in self.types)


def local_cuda() -> tuple[int, int | None]:
    """(CUDA devices this process sees, the first one's memory in bytes or None if unknown). The memory comes
    from nvidia-smi: asking torch would create a CUDA context that the driver process keeps on the GPU."""
    import torch

    count = torch.cuda.device_count()
    if not count:
        return 0, None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return count, int(float(out.stdout.split()[0])) << 20
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return count, None


def this_machine(gpus: float) -> NodeTypes:
    """The embedded local Ray: one node with this machine's CPUs and the GPUs it declares."""
    return NodeTypes("this machine", (NodeType("local", float(os.cpu_count() or 1), gpus, 1),), complete=True)


def from_cluster_config(path: str | os.PathLike) -> NodeTypes:
    """The worker node types of a cluster-launcher YAML (cluster.yaml, or the head's bootstrap copy)."""
    import yaml

    try:
        config = yaml.safe_load(Path(path).expanduser().read_text())
        head = config.get("head_node_type")
        types = tuple(
            NodeType(
                name,
                float(t.get("resources", {}).get("CPU", 0)),
                float(t.get("resources", {}).get("GPU", 0)),
                int(t.get("max_workers", 0)),
            )
            for name, t in config["available_node_types"].items()
            if name != head
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as err:
        raise ConfigError(
            f"--cluster-config {path}: not a readable cluster config "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    return NodeTypes(str(path), types, complete=True)


def from_running_cluster() -> NodeTypes:
    """The nodes up now (after `ray.init`): all an unconfigured cluster tells about itself."""
    import ray

    types = tuple(
        NodeType(n["NodeID"][:8], n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0), 1)
        for n in ray.nodes()
        if n.get("Alive")
    )
    return NodeTypes("the cluster's nodes up now", types, complete=False)


def cluster_node_types(cluster_config: str | None) -> NodeTypes:
    """`--cluster-config`, else the head's bootstrap config when this driver runs on a `ray up` head, else the
    nodes up now."""
    if cluster_config:
        return from_cluster_config(cluster_config)
    if BOOTSTRAP_CONFIG.expanduser().is_file():
        return from_cluster_config(BOOTSTRAP_CONFIG)
    return from_running_cluster()


def check_fits(nodes: NodeTypes, gpus: float, gpu_per_trial: float, cpu_per_trial: float) -> None:
    """One trial must fit one node type, and the sweep's GPUs what the node types can scale to."""
    if gpu_per_trial > 0:
        hosts = [t for t in nodes.types if t.gpus >= gpu_per_trial and t.max_workers > 0]
        if not hosts:
            if nodes.complete:
                raise ConfigError(
                    f"--num-gpus={gpus:g}: no node type of {nodes.source} has a GPU "
                    f"({nodes.describe() or 'none'}); use --num-gpus 0 for CPU trials"
                )
            return  # no GPU node up yet: the autoscaler decides
        if not any(t.cpus >= cpu_per_trial for t in hosts):
            most = max(t.cpus for t in hosts)
            raise ConfigError(
                f"--cpus-per-trial={cpu_per_trial:g} fits no GPU node type of {nodes.source} "
                f"({nodes.describe()}); at most {most:g} fit"
            )
        if nodes.complete and gpus > nodes.most_gpus:
            raise ConfigError(
                f"--num-gpus={gpus:g} exceeds what {nodes.source} can provide "
                f"({nodes.most_gpus:g} GPUs: {nodes.describe()}); at most {nodes.most_gpus:g} fit"
            )
    elif nodes.types and not any(t.cpus >= cpu_per_trial for t in nodes.types):
        most = max(t.cpus for t in nodes.types)
        raise ConfigError(
            f"--cpus-per-trial={cpu_per_trial:g} exceeds every node of {nodes.source} "
            f"({nodes.describe()}); at most {most:g} fit"
        )


def require_usable_gpu(
    requested_device: str, assigned_gpus: float, device_type: str, node: str, visible_devices: str = ""
) -> None:
    """A trial Ray assigned GPUs must train on CUDA unless the sweep asked for the CPU (`--device cpu`): a
    node whose driver or torch cannot see its GPU must fail loudly, never train on its CPU unnoticed."""
    if requested_device == "cpu" or assigned_gpus <= 0 or device_type == "cuda":
        return
    raise RuntimeError(
        f"node {node}: Ray assigned this trial {assigned_gpus:g} GPU (CUDA_VISIBLE_DEVICES={visible_devices!r}) "
        "but torch sees no CUDA device there (broken driver, CPU-only torch, or logical GPUs only); refusing to "
        "train on the CPU. Fix the node, or pass --device cpu to train on CPUs on purpose"
    )
