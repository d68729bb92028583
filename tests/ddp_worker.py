"""Test-only torchrun entry for tests/test_train_ddp.py: p2d's `train` with a hook that gathers a
hash of every rank's weights after each step (all_gather); rank 0 appends them to a JSON file.
(One train() a process: a second process group in the same torchrun processes hangs.)

Usage: torchrun --standalone --nproc-per-node 2 tests/ddp_worker.py
       MANIFEST OUT DIGESTS.json '{"max_steps": 4}'
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch.distributed as dist

from p2d.train.loop import TrainOptions, train


def weights_digest(states: dict[str, dict]) -> str:
    """SHA-256 over the networks' state dicts ({name: state_dict}), in order."""
    h = hashlib.sha256()
    for name, state in states.items():
        for key, value in state.items():
            h.update(f"{name}.{key}".encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(manifest: str, out: str, digests: str, options: str = "{}") -> None:
    rows = json.loads(Path(digests).read_text()) if Path(digests).is_file() else []

    def gather_digests(step: int, nets) -> None:
        found = [None] * dist.get_world_size()
        dist.all_gather_object(found, weights_digest({k: net.state_dict() for k, net in nets.items()}))
        rows.append({"step": step, "digests": found})
        if dist.get_rank() == 0:
            Path(digests).write_text(json.dumps(rows))

    train(manifest, out=out, options=TrainOptions(device="cpu"), on_step=gather_digests,
          **json.loads(options))


if __name__ == "__main__":
    main(*sys.argv[1:])
