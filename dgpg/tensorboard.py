"""TensorBoard logging of a training run, beside metrics.csv (`dgpg train --tensorboard`).

One scalar per metrics.csv column, under the same name, at step = episode; the value is the
mean over the run's seeds (metrics.csv keeps each seed). Needs the optional extra
`pip install -e '.[tensorboard]'` (tensorboardX); view with `tensorboard --logdir RUN/tensorboard`.
"""

from __future__ import annotations

from pathlib import Path


class TensorBoardLogger:
    """Writes event files into `folder`; a resumed run appends to the same folder."""

    def __init__(self, folder: Path) -> None:
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(logdir=str(folder))

    def log(self, episode: int, stats: dict[str, float]) -> None:
        """`stats`: metric name -> the seeds' mean value in this episode."""
        for name, value in stats.items():
            self._writer.add_scalar(name, value, global_step=episode)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
