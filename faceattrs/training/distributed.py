"""Data-parallel training under `torchrun`: process group, disjoint per-rank samples, reduced metrics.

With no launcher (no WORLD_SIZE in the environment) everything here is a no-op for
one process, so the train stage is the same code either way.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from faceattrs.core.errors import InputError
from faceattrs.training.loader import epoch_generator


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """The one rank that writes checkpoints, logs and prints."""
        return self.rank == 0


# One process, no launcher: what every function here treats as a no-op.
SINGLE = World()


def launch_command(processes: int, nodes: int, rendezvous: str | None, rendezvous_id: str, argv: list[str]):
    """The train stage again under torchrun, or None when one process trains.

    One node: ``--standalone``. Several: every node runs this same command and torchrun's
    c10d rendezvous at ``rendezvous`` (HOST:PORT of the first node) gives each its rank.
    """
    if processes == 1 and nodes == 1:
        return None
    command = [sys.executable, "-m", "torch.distributed.run"]
    if nodes == 1:
        command.append("--standalone")
    else:
        command += [
            f"--nnodes={nodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rendezvous}",
            f"--rdzv-id={rendezvous_id}",
        ]
    return [*command, f"--nproc_per_node={processes}", "-m", "stages.train", *argv]


def check_gpus(processes: int, device_type: str) -> None:
    """NCCL runs one process per GPU: more processes than GPUs fail deep inside it, so say so first."""
    if device_type == "cuda" and processes > torch.cuda.device_count():
        raise InputError(
            f"train.processes is {processes} but this machine has {torch.cuda.device_count()} CUDA device(s); "
            "data-parallel training runs one process per GPU"
        )


def init(device_type: str) -> World:
    """Join the process group torchrun describes in the environment; one process without it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return world


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def reduce_sum(world: World, *values: torch.Tensor) -> list[torch.Tensor]:
    """Element-wise sums over ranks (float64 on the CPU, so counts stay exact)."""
    if not world.distributed:
        return list(values)
    flat = torch.cat([v.detach().double().cpu().reshape(-1) for v in values])
    dist.all_reduce(flat)
    out, start = [], 0
    for v in values:
        out.append(flat[start : start + v.numel()].reshape(v.shape))
        start += v.numel()
    return out


class RankSampler(Sampler[int]):
    """This rank's share of one epoch: a permutation fixed by (seed, epoch), dealt out like cards.

    Unlike torch's DistributedSampler it never pads with repeats, so across ranks each
    sample (each entry of ``pool``, where one is given) is dealt exactly once per epoch
    (the training loader may then drop a rank's last batch of one: ``loader.drops_last``);
    ranks may get one sample more or less, which DDP's join context absorbs.
    """

    def __init__(
        self, n: int, seed: int, epoch: int, world: World, shuffle: bool = True, pool: torch.Tensor | None = None
    ):
        """``pool``: the rows to deal (a subset, or with repeats), instead of all ``n``."""
        self.pool = pool
        self.n = n if pool is None else len(pool)
        self.seed, self.epoch, self.world, self.shuffle = seed, epoch, world, shuffle

    def _order(self) -> torch.Tensor:
        items = torch.arange(self.n) if self.pool is None else self.pool
        if not self.shuffle:
            return items
        return items[torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch))]

    def __iter__(self):
        return iter(self._order()[self.world.rank :: self.world.size].tolist())

    def __len__(self) -> int:
        return len(range(self.world.rank, self.n, self.world.size))
