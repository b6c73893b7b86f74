"""Generate-once caching of synthetic datasets in their data root.

A synthetic dataset is written into `root` the first time it is needed and read from there
afterwards. `root/synthetic.json` records what was generated; when the requested settings differ
(a `debug=fast` run before a full one, a different difficulty) the generator's own output is
replaced. A directory without that manifest is never touched: it is the user's data. Generation
goes to a temporary sibling and is renamed into place under a file lock, so parallel runs
(multirun, DDP ranks) never see half a dataset.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lovaszseg.runs.atomic import replace_folder, staging_folder, write_text_atomic

log = logging.getLogger(__name__)

MANIFEST = "synthetic.json"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    lock_path = root.parent / f".{root.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _changes(old: dict, new: dict) -> str:
    """`key: old -> new` for what differs between two manifests."""
    if old.get("generator") != new["generator"]:
        return f"generator {old.get('generator')} -> {new['generator']}"
    before, after = old.get("settings", {}), new["settings"]
    keys = sorted(set(before) | set(after))
    return ", ".join(
        f"{k}: {before.get(k)} -> {after.get(k)}" for k in keys if before.get(k) != after.get(k)
    )


def ensure_generated(
    root: Path | str,
    generator: str,
    settings: Mapping[str, Any],
    write: Callable[[Path], None],
) -> bool:
    """Make `root` hold the synthetic dataset `write` produces; True when it (re)generated."""
    root = Path(root).expanduser().resolve()
    wanted = {"generator": generator, "settings": json.loads(json.dumps(dict(settings)))}
    if _read_manifest(root) == wanted:
        return False
    root.parent.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        manifest = _read_manifest(root)
        if manifest == wanted:
            return False
        if root.exists() and any(root.iterdir()) and manifest is None:
            log.info("%s is not empty and has no %s: reading it as it is", root, MANIFEST)
            return False
        if manifest is not None:
            log.warning("regenerating %s: %s", root, _changes(manifest, wanted))
        with staging_folder(root) as folder:
            write(folder)
            write_text_atomic(folder / MANIFEST, json.dumps(wanted, indent=2) + "\n")
            replace_folder(folder, root)
    log.info("generated synthetic %s in %s", generator, root)
    return True


class SyntheticData:
    """A synthetic dataset built from its settings (`data.synthetic` in the configs, by
    `_target_`), written once into the data root that its DataModule then reads as real data.

    A subclass names itself in the manifest (`name`: a new version regenerates cached data), and
    gives how its settings are completed and validated (`complete`) and how it is written into a
    folder (`write_into`).
    """

    name: str
    complete: Callable[[Mapping[str, Any]], dict[str, Any]]
    write_into: Callable[[Path, Mapping[str, Any]], None]

    def __init__(self, **settings: Any) -> None:
        # Hydra passes lists as ListConfig; the manifest and the generator want plain values
        plain = OmegaConf.to_container(OmegaConf.create(settings), resolve=True)
        self.settings = self.complete(plain)

    @property
    def split_sizes(self) -> tuple[int, int]:
        """How many train and val samples it writes."""
        return int(self.settings["num_train"]), int(self.settings["num_val"])

    def prepare(self, root: Path | str) -> None:
        """Write the dataset into `root` unless it is already there."""
        ensure_generated(
            root, self.name, self.settings, lambda folder: self.write_into(folder, self.settings)
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings})"
