"""`dgpg train` with a tiny configuration, for tests that kill it: `python train_driver.py ARGS...`
runs `dgpg ARGS...` (so `train --agents 2 --episodes 3 --out DIR [--resume]`).

The learner does 2 update epochs of 2 minibatches and the test evaluation uses the first 10 test
scenarios: the configuration of tests/test_training.py, so that with a shared persistent
compilation cache the two reuse each other's compiled functions. With DGPG_KILL_AT=NAME:K:WHERE
the process kills itself with SIGKILL during its K-th atomic write of a file called NAME:

    start    the temporary file is created, nothing written yet
    half     half of the new contents written to the temporary file
    full     all of it written and fsynced, not yet renamed
    renamed  the rename is done (the new file is in place), nothing after it
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

from dgpg import atomic, cli, training
from dgpg.evaluation import TEST_SEEDS
from dgpg.learners.ppo import TrainConfig

N_TEST = 10


def small_train_config(self: training.RunConfig) -> TrainConfig:
    return TrainConfig(algo=self.algo, alpha=self.alpha, update_epochs=2, num_minibatches=2)


def _install_kill(spec: str) -> None:
    name, k, where = spec.split(":")
    k = int(k)
    real = atomic.write_bytes
    seen = 0

    def write_bytes(path, data: bytes) -> None:
        nonlocal seen
        path = Path(path)
        if path.name == name:
            seen += 1
            if seen == k:
                if where == "renamed":
                    real(path, data)
                else:
                    cut = {"start": 0, "half": len(data) // 2, "full": len(data)}[where]
                    fd, _ = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                             dir=path.parent)
                    os.write(fd, data[:cut])
                    os.fsync(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        real(path, data)

    atomic.write_bytes = write_bytes


if __name__ == "__main__":
    training.RunConfig.train_config = small_train_config
    training.TEST_SEEDS = TEST_SEEDS[:N_TEST]
    if os.environ.get("DGPG_KILL_AT"):
        _install_kill(os.environ["DGPG_KILL_AT"])
    cli.main(sys.argv[1:])
