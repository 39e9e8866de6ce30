"""Scale-out: ``audiomcq train`` relaunches itself under torchrun or ``accelerate launch``, and the pieces of a run
that must happen once (writing the allocation, the resolved recipe, markers, uploads) happen on rank 0 only.

The launcher only builds a command line; the trainers (DDP, or DeepSpeed ZeRO-2/3 from the recipe's
``deepspeed``) take it from there. Multi-node jobs pass ``--nnodes/--node-rank/--master-addr`` or let a Kubeflow
TrainJob/PyTorchJob set torchrun's ``PET_*`` environment. Without a GPU the workers use the gloo backend (how the
test suite runs two processes on a CPU); with GPUs, asking for more processes per node than there are devices is an
error before anything starts.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)
LAUNCHERS = ("torchrun", "accelerate")


@dataclass(frozen=True)
class Launch:
    """How many processes, on how many nodes, through which launcher."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    launcher: str = "torchrun"

    @property
    def distributed(self) -> bool:
        return self.nproc_per_node > 1 or self.nnodes > 1


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Rank 0 of the job (True in a single-process run)."""
    return rank() == 0


LAUNCHED = "AUDIOMCQ_LAUNCHED"


def inside_launch() -> bool:
    """Whether this process was started by a launcher (so it must not launch again, whatever the launcher sets)."""
    return "LOCAL_RANK" in os.environ or LAUNCHED in os.environ


def barrier() -> None:
    """Wait for every rank; a no-op in a single process. Joins the job's process group if nothing has yet (the
    trainers reuse it)."""
    if world_size() <= 1:
        return
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    dist.barrier(device_ids=[torch.cuda.current_device()] if cuda else None)


def command(launch: Launch, cli_args: Sequence[str]) -> list[str]:
    """The launcher command that runs ``audiomcq <cli_args>`` in every process."""
    if launch.launcher not in LAUNCHERS:
        raise AudioMCQError(f"unknown launcher {launch.launcher!r}; known: {', '.join(LAUNCHERS)}")
    if launch.nproc_per_node < 1 or launch.nnodes < 1 or not 0 <= launch.node_rank < launch.nnodes:
        raise AudioMCQError(f"invalid launch geometry {launch}")
    if launch.launcher == "torchrun":
        head = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={launch.nproc_per_node}",
            f"--nnodes={launch.nnodes}",
            f"--node-rank={launch.node_rank}",
            f"--master-addr={launch.master_addr}",
            f"--master-port={launch.master_port}",
        ]
    else:
        head = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            f"--num_processes={launch.nproc_per_node * launch.nnodes}",
            f"--num_machines={launch.nnodes}",
            f"--machine_rank={launch.node_rank}",
            f"--main_process_ip={launch.master_addr}",
            f"--main_process_port={launch.master_port}",
            "--dynamo_backend=no",
            "--multi_gpu",
        ]
    return [*head, "-m", "audiomcq.cli", *cli_args]


def gpu_count() -> int:
    """The GPUs this process can see (0 on a CPU machine)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def relaunch(launch: Launch, cli_args: Sequence[str]) -> int:
    """Run ``audiomcq <cli_args>`` under the launcher and return its exit status."""
    gpus = gpu_count()
    if not gpus and launch.launcher == "accelerate":  # its CPU mode starts several processes only through mpirun
        raise AudioMCQError("--launcher accelerate needs GPUs; on CPU use --launcher torchrun (gloo)")
    if gpus and launch.nproc_per_node > gpus:
        raise AudioMCQError(f"--nproc-per-node {launch.nproc_per_node} exceeds the {gpus} GPU(s) on this node")
    env = {**os.environ, LAUNCHED: "1"}
    if not gpus:
        env["ACCELERATE_USE_CPU"] = "true"  # the trainers then join a gloo group instead of looking for CUDA
    cmd = command(launch, cli_args)
    log.info(
        "launching %d process(es) on node %d of %d: %s",
        launch.nproc_per_node,
        launch.node_rank,
        launch.nnodes,
        " ".join(cmd),
    )
    return subprocess.run(cmd, env=env, check=False).returncode
