"""Fetch a real dataset into its data root: `python -m lovaszseg.data.download NAME --root DIR`.

Streaming with a progress bar; an interrupted download resumes from its `.part` file with an HTTP
Range request; the archive is checked against a sha256; extraction refuses absolute paths, `..`
and links that leave the target, goes to a temporary sibling and is renamed into place, so the
root is either complete or absent. A second run finds the installed root and does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import stat
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from lovaszseg.runs.atomic import replace_folder, staging_folder

MARKER = ".lovaszseg-download.json"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from and how its archive is laid out."""

    url: str | None
    archive: str
    sha256: str | None = None
    strip_top: bool = False  # the archive wraps everything in one folder that is the root
    note: str = ""


SOURCES = {
    "mini_deepglobe": Source(
        url="https://paddleseg.bj.bcebos.com/dataset/MiniDeepGlobeRoadExtraction.zip",
        archive="MiniDeepGlobeRoadExtraction.zip",
        strip_top=True,
    ),
    "voc2012": Source(
        url="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
        archive="VOCtrainval_11-May-2012.tar",
    ),
    "deepglobe": Source(
        url=None,
        archive="deepglobe-road-extraction.zip",
        note="DeepGlobe Road Extraction is distributed through Kaggle, which needs a login: "
        "download it there and pass --url file:///path/to/archive.zip (or a mirror's URL)",
    ),
}


class DownloadError(RuntimeError):
    """The transfer failed; the partial file is kept so that the next run resumes."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, part: Path, console: Console, show_progress: bool = True) -> None:
    """Append the rest of `url` to `part`, resuming from its current size."""
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416 and done:  # nothing left to send: the part is complete
            return
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise DownloadError(f"cannot reach {url}: {error}") from error
    with response:
        if done and response.status != 206:
            console.print(f"[yellow]{url} does not resume downloads; starting again[/]")
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        columns = (
            *Progress.get_default_columns()[:1],
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
        )
        with (
            Progress(*columns, console=console, disable=not show_progress) as progress,
            part.open("ab" if done else "wb") as out,
        ):
            task = progress.add_task(
                f"fetching {part.name.removesuffix('.part')}", total=total, completed=done
            )
            try:
                while block := response.read(CHUNK):
                    out.write(block)
                    done += len(block)
                    progress.update(task, completed=done)
            except (http.client.IncompleteRead, OSError) as error:
                raise DownloadError(
                    f"download of {url} broke off at {done} bytes ({error}); run again to resume"
                ) from error
    if total is not None and done < total:
        raise DownloadError(
            f"download of {url} stopped at {done} of {total} bytes; run again to resume"
        )


def _unsafe_reason(
    name: str, target: Path, link: str | None = None, hard: bool = False
) -> str | None:
    """Why writing archive member `name` (optionally a link to `link`) would escape `target`."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        return "absolute path"
    if ".." in path.parts:
        return "path contains '..'"
    if link is not None:
        link_path = PurePosixPath(link.replace("\\", "/"))
        if link_path.is_absolute():
            return f"link to absolute path {link}"
        base = target if hard else (target / path).parent
        if not (base / link_path).resolve().is_relative_to(target.resolve()):
            return f"link to {link} leaves the target"
    return None


def _zip_link(info: zipfile.ZipInfo, archive: zipfile.ZipFile) -> str | None:
    if stat.S_ISLNK(info.external_attr >> 16):
        return archive.read(info).decode("utf-8", "replace")
    return None


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a .zip / .tar(.gz) into `target` after checking every member; refuse the lot if
    any member would land outside it."""
    problems: list[str] = []
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    reason = _unsafe_reason(info.filename, target, _zip_link(info, zf))
                    if reason:
                        problems.append(f"{info.filename!r}: {reason}")
                if not problems:
                    for info in zf.infolist():
                        link = _zip_link(info, zf)
                        if link is None:
                            zf.extract(info, target)
                        else:
                            (target / info.filename).parent.mkdir(parents=True, exist_ok=True)
                            (target / info.filename).symlink_to(link)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for member in members:
                    link = member.linkname if member.issym() or member.islnk() else None
                    reason = _unsafe_reason(member.name, target, link, hard=member.islnk())
                    if not (member.isfile() or member.isdir() or link is not None):
                        reason = "device or special file"
                    if reason:
                        problems.append(f"{member.name!r}: {reason}")
                if not problems:
                    # the stdlib's own guard too, where it exists (3.10.12+, 3.11.4+)
                    guard = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                    tf.extractall(target, members=members, **guard)
        else:
            raise ValueError(f"{archive} is neither a zip nor a tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(f"cannot extract {archive} (truncated or corrupt?): {error}") from error
    if problems:
        listed = "\n  ".join(problems[:20])
        raise ValueError(f"refusing to extract {archive}: unsafe member(s)\n  {listed}")


def install(archive: Path, root: Path, strip_top: bool, record: dict) -> None:
    """Extract into a temporary sibling of `root` (only an empty or absent root gets here), then
    rename it into place in one step."""
    with staging_folder(root, "extract") as folder:
        safe_extract(archive, folder)
        content = folder
        entries = [p for p in folder.iterdir() if p.name != "__MACOSX"]  # macOS zip residue
        if strip_top and len(entries) == 1 and entries[0].is_dir():
            content = entries[0]
        (content / MARKER).write_text(json.dumps(record, indent=2) + "\n")
        replace_folder(content, root)


def download(
    name: str,
    root: Path | str,
    url: str | None = None,
    sha256: str | None = None,
    keep_archive: bool = False,
    console: Console | None = None,
    show_progress: bool = True,
) -> Path:
    """Make `root` hold dataset `name`; a no-op when a previous run installed it."""
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(SOURCES)}")
    console = console or Console(stderr=True)
    source = SOURCES[name]
    url = url or source.url
    sha256 = (sha256 or source.sha256 or "").lower() or None
    if url is None:
        raise ValueError(f"{name} has no public URL: {source.note}")
    root = Path(root).expanduser().resolve()
    if (root / MARKER).is_file():
        console.print(f"{name} is already in {root} (delete it to fetch again)")
        return root
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} exists and is not empty; not overwriting it with {name}")
    root.parent.mkdir(parents=True, exist_ok=True)
    part = root.parent / f".{root.name}.{source.archive}.part"
    fetch(url, part, console, show_progress)
    actual = sha256_of(part)
    if sha256 and actual != sha256:
        part.unlink()
        raise ValueError(
            f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}; the download was deleted"
        )
    if not sha256:
        console.print(f"[yellow]no checksum to verify {url} against; its sha256 is {actual}[/]")
    archive = part.with_suffix("")  # complete and verified: no longer a part to resume
    os.replace(part, archive)
    try:
        install(archive, root, source.strip_top, {"dataset": name, "url": url, "sha256": actual})
    except ValueError:
        archive.unlink()  # corrupt or unsafe: fetching the same bytes again will not help
        raise
    if keep_archive:
        os.replace(archive, root.parent / source.archive)
    else:
        archive.unlink()
    console.print(f"[green]{name} installed in {root}[/]")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lovaszseg.data.download", description=__doc__.splitlines()[0]
    )
    parser.add_argument("name", choices=sorted(SOURCES))
    parser.add_argument(
        "--root",
        type=Path,
        help="dataset directory (default: $LOVASZSEG_DATA_DIR/NAME or data/NAME)",
    )
    parser.add_argument("--url", help="a mirror (or file://) URL of the archive")
    parser.add_argument("--sha256", help="the archive's expected sha256")
    parser.add_argument(
        "--keep-archive", action="store_true", help="keep the archive beside the root"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    root = args.root or Path(os.environ.get("LOVASZSEG_DATA_DIR", "data")) / args.name
    console = Console(stderr=True)
    try:
        download(args.name, root, args.url, args.sha256, args.keep_archive, console, not args.quiet)
    except (ValueError, DownloadError) as error:
        console.print(f"[red]error:[/] {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
