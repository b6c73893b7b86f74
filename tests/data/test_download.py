"""download.py against a real HTTP server on 127.0.0.1 serving synthetic archives."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from lovaszseg.data.download import MARKER, DownloadError, download, main, safe_extract


class ArchiveServer(BaseHTTPRequestHandler):
    """Serves `files[path]`, honours `Range: bytes=N-`, and can cut the first transfer short."""

    files: ClassVar[dict[str, bytes]] = {}
    cut_first_at: ClassVar[int | None] = None
    requests: ClassVar[list[str | None]] = []

    def do_GET(self):
        body = self.files.get(self.path)
        type(self).requests.append(self.headers.get("Range"))
        if body is None:
            self.send_error(404)
            return
        start = (
            int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        )
        if start >= len(body) and start:
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = type(self).cut_first_at
        if cut is not None:
            type(self).cut_first_at = None
            self.wfile.write(body[start:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    ArchiveServer.files, ArchiveServer.cut_first_at, ArchiveServer.requests = {}, None, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ArchiveServer)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield ArchiveServer, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def mini_zip() -> bytes:
    """A MiniDeepGlobe-shaped zip with a single top folder and random (incompressible) payload."""
    buffer = io.BytesIO()
    payload = hashlib.sha256(b"x").digest() * 20000  # 640 kB, several chunks
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("MiniDeepGlobeRoadExtraction/train.txt", "train/1_sat.jpg|train/1_mask.png\n")
        zf.writestr("MiniDeepGlobeRoadExtraction/train/1_sat.jpg", payload)
    return buffer.getvalue()


def tar_with(members: list[tarfile.TarInfo], data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for member in members:
            tf.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buffer.getvalue()


def member(name: str, kind=tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    return info


def test_good_archive_is_installed_checked_and_a_second_run_is_a_no_op(server, tmp_path):
    handler, base = server
    body = mini_zip()
    handler.files["/mini.zip"] = body
    root = tmp_path / "mini_deepglobe"
    sha = hashlib.sha256(body).hexdigest()
    download("mini_deepglobe", root, url=f"{base}/mini.zip", sha256=sha, show_progress=False)
    assert (root / "train.txt").read_text().startswith("train/1_sat.jpg|")  # top folder stripped
    assert (root / "train" / "1_sat.jpg").stat().st_size == 640000
    assert (
        (root / MARKER).is_file()
        and not list(tmp_path.glob(".*part"))
        and not list(tmp_path.glob(".*extract*"))
    )
    download("mini_deepglobe", root, url=f"{base}/mini.zip", sha256=sha, show_progress=False)
    assert len(handler.requests) == 1  # the second run did not touch the network


def test_interrupted_download_fails_then_resumes_with_a_range_request(server, tmp_path):
    handler, base = server
    body = mini_zip()
    handler.files["/mini.zip"] = body
    handler.cut_first_at = 300_000
    root = tmp_path / "mini"
    sha = hashlib.sha256(body).hexdigest()
    with pytest.raises(DownloadError, match="run again to resume"):
        download("mini_deepglobe", root, url=f"{base}/mini.zip", sha256=sha, show_progress=False)
    part = tmp_path / ".mini.MiniDeepGlobeRoadExtraction.zip.part"
    assert part.stat().st_size == 300_000 and not root.exists()
    download("mini_deepglobe", root, url=f"{base}/mini.zip", sha256=sha, show_progress=False)
    assert handler.requests == [None, "bytes=300000-"]
    assert (root / "train" / "1_sat.jpg").stat().st_size == 640000


def test_wrong_checksum_is_refused_and_the_download_deleted(server, tmp_path):
    handler, base = server
    handler.files["/mini.zip"] = mini_zip()
    with pytest.raises(ValueError, match=r"checksum mismatch.*expected sha256 0{64}"):
        download(
            "mini_deepglobe",
            tmp_path / "m",
            url=f"{base}/mini.zip",
            sha256="0" * 64,
            show_progress=False,
        )
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob(".*"))


def test_truncated_archive_fails_to_extract_and_installs_nothing(server, tmp_path):
    handler, base = server
    body = tar_with([member("VOCdevkit/VOC2012/a.jpg", size=50000)], b"j" * 50000)
    handler.files["/voc.tar"] = body[:20000]
    with pytest.raises(ValueError, match=r"cannot extract .*truncated or corrupt"):
        download("voc2012", tmp_path / "voc", url=f"{base}/voc.tar", show_progress=False)
    assert not (tmp_path / "voc").exists() and not list(tmp_path.glob(".voc.extract-*"))


def test_missing_file_on_the_server_names_the_url(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match=r"/nothing\.zip: HTTP 404"):
        download("mini_deepglobe", tmp_path / "m", url=f"{base}/nothing.zip", show_progress=False)


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([member("/tmp/evil.txt", size=4)], "absolute path"),
        ([member("VOCdevkit/../../evil.txt", size=4)], "'..'"),
        ([member("VOCdevkit/link", tarfile.SYMTYPE, "../../outside")], "leaves the target"),
        ([member("VOCdevkit/abs", tarfile.SYMTYPE, "/etc/passwd")], "link to absolute path"),
        ([member("VOCdevkit/hard", tarfile.LNKTYPE, "../secret")], "leaves the target"),
    ],
)
def test_malicious_tar_is_refused_before_anything_is_written(server, tmp_path, members, reason):
    handler, base = server
    handler.files["/evil.tar"] = tar_with([member("VOCdevkit/ok.txt", size=4), *members], b"evil")
    root = tmp_path / "sandbox" / "voc"
    with pytest.raises(ValueError, match=rf"refusing to extract[\s\S]*{reason}"):
        download("voc2012", root, url=f"{base}/evil.tar", show_progress=False)
    assert not root.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "sandbox"
    ]  # nothing anywhere, no leftovers


def test_malicious_zip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", "ok")
        zf.writestr("../escape.txt", "evil")
        link = zipfile.ZipInfo("link")
        link.external_attr = 0o120777 << 16  # a symlink entry
        zf.writestr(link, "../../etc")
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(
        ValueError,
        match=r"'\.\./escape\.txt': path contains '\.\.'[\s\S]*'link': link to \.\./\.\./etc",
    ):
        safe_extract(archive, target)
    assert not list(target.iterdir()) and not (tmp_path / "escape.txt").exists()


def test_cli_reports_errors_and_exits_non_zero(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    assert (
        main(
            [
                "voc2012",
                "--root",
                str(tmp_path / "full"),
                "--url",
                "http://127.0.0.1:9/x.tar",
                "--quiet",
            ]
        )
        == 1
    )
    assert "not empty" in capsys.readouterr().err
    assert main(["deepglobe", "--root", str(tmp_path / "dg")]) == 1
    assert "Kaggle" in capsys.readouterr().err
