"""`python -m lovaszseg.check data=...`: validate a dataset with the training job's data config.

Exits non-zero when anything is wrong, so it can gate a training script. The data modules are
imported inside ``run``: ``--help`` must not wait seconds for torch.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig
from rich.console import Console

from lovaszseg.config.resolvers import register_resolvers

register_resolvers()


def run(cfg: DictConfig, console: Console | None = None) -> int:
    """Check `cfg.data`; the number of problems found."""
    from lovaszseg.data.validation import check_dataset, print_report

    dm = hydra.utils.instantiate(cfg.data)
    reports = check_dataset(dm, workers=cfg.get("workers", 4))
    return print_report(dm, reports, console or Console(), max_shown=cfg.get("max_shown", 50))


@hydra.main(config_path="pkg://lovaszseg.conf", config_name="check", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if run(cfg):
        sys.exit(1)


if __name__ == "__main__":
    main()
