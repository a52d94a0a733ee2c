"""dataset_prep.download against a small HTTP server on 127.0.0.1 (http.server in a thread,
with Range support): resumed transfers, checksum and size mismatches, servers that ignore
Range, and unpacking KuaiRand/KuaiRec-style archives into the layout the converters read."""

import hashlib
import io
import os
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import yaml

import test_data_kuairand
import test_data_kuairec
from dataset_prep import RawDataMissing, download, kuairand, kuairec
from recbole_lda.cli import download as download_cli


class Handler(BaseHTTPRequestHandler):
    """Serves server.files; honours `Range: bytes=START-[END]` unless server.ignore_range;
    the n-th response is cut after server.cuts[n] body bytes (None = whole)."""

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if match and not server.ignore_range:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(body) - 1
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            payload = body[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{start + len(payload) - 1}/{len(body)}")
        else:
            payload = body
            self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        cut = server.cuts.pop(0) if server.cuts else None
        self.wfile.write(payload if cut is None else payload[:cut])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.cuts, httpd.requests, httpd.ignore_range = {}, [], [], False
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


BODY = np.random.default_rng(0).bytes(300_000)
MD5 = hashlib.md5(BODY).hexdigest()


def get(server, path, **kwargs):
    kwargs = {"md5": MD5, "size": len(BODY), "retry_wait": 0, "out": io.StringIO()} | kwargs
    return download.download(server.url + "/file.bin", str(path), **kwargs), kwargs["out"].getvalue()


def test_cut_transfer_is_resumed_with_range(server, tmp_path):
    server.files["/file.bin"] = BODY
    server.cuts = [100_000, None]
    path, log = get(server, tmp_path / "file.bin", retries=2)
    assert (tmp_path / "file.bin").read_bytes() == BODY and not (tmp_path / "file.bin.part").exists()
    assert server.requests == [("/file.bin", None), ("/file.bin", "bytes=100000-")]
    assert "resuming from byte 100,000" in log
    assert "file.bin:  33% 100k/300k" in log and "file.bin: 100% 300k/300k" in log  # tqdm status lines, not a bar


def test_progress_is_a_tqdm_bar_on_a_terminal_and_lines_elsewhere(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    progress = download.Progress("file.bin", 300_000, 100_000, terminal)
    progress.update(200_000)
    progress.update(300_000, final=True)
    assert "\r" in terminal.getvalue() and "file.bin: 100%" in terminal.getvalue() and "300k/300k" in terminal.getvalue()

    clock = iter([0.0, 1.0, 11.0, 12.0])
    monkeypatch.setattr(download.time, "monotonic", lambda: next(clock))
    log = io.StringIO()
    progress = download.Progress("file.bin", None, 0, log)  # unknown size
    progress.update(1_000)  # 1 s: too soon for a line
    progress.update(50_000)  # 11 s: a line
    progress.update(60_000, final=True)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2
    assert lines[0].startswith("file.bin: 50.0k") and lines[1].startswith("file.bin: 60.0k")


def test_broken_run_leaves_part_and_next_run_resumes(server, tmp_path):
    server.files["/file.bin"] = BODY
    server.cuts = [50_000]
    with pytest.raises(download.DownloadError, match=r"gave up after 1 attempt\(s\) with 50,000 bytes .*Run the same command again"):
        get(server, tmp_path / "file.bin", retries=0)
    assert (tmp_path / "file.bin.part").stat().st_size == 50_000 and not (tmp_path / "file.bin").exists()
    get(server, tmp_path / "file.bin", retries=0)
    assert server.requests[-1] == ("/file.bin", "bytes=50000-")
    assert (tmp_path / "file.bin").read_bytes() == BODY


def test_complete_part_gets_416_and_is_verified(server, tmp_path):
    server.files["/file.bin"] = BODY
    (tmp_path / "file.bin.part").write_bytes(BODY)
    get(server, tmp_path / "file.bin", size=None)  # the server answers 416: nothing left to send
    assert server.requests == [("/file.bin", f"bytes={len(BODY)}-")]
    assert (tmp_path / "file.bin").read_bytes() == BODY


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    server.files["/file.bin"] = BODY[:-1] + b"x"
    with pytest.raises(download.DownloadError, match=rf"md5 mismatch: expected {MD5}, got [0-9a-f]{{32}}; the corrupt download was deleted"):
        get(server, tmp_path / "file.bin")
    assert os.listdir(tmp_path) == []

    server.files["/file.bin"] = BODY[:1000]
    with pytest.raises(download.DownloadError, match=r"downloaded 1,000 bytes, expected 300,000 \(size\)"):
        get(server, tmp_path / "file.bin")
    assert os.listdir(tmp_path) == []


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.files["/file.bin"] = BODY
    server.ignore_range = True
    (tmp_path / "file.bin.part").write_bytes(b"stale bytes of another file")
    _, log = get(server, tmp_path / "file.bin")
    assert "does not resume" in log and (tmp_path / "file.bin").read_bytes() == BODY


def test_http_error_fails_at_once(server, tmp_path):
    with pytest.raises(download.DownloadError, match="HTTP 404"):
        get(server, tmp_path / "file.bin", retries=3)
    assert len(server.requests) == 1


def tar_gz(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def kuairand_archive(tmp_path):
    """A KuaiRand-Pure.tar.gz with the official layout: KuaiRand-Pure/{LICENSE, data/*.csv}."""
    raw = tmp_path / "src"
    test_data_kuairand.write_log(raw / "log_standard_4_08_to_4_21_pure.csv", test_data_kuairand.PART1 + test_data_kuairand.PART2)
    test_data_kuairand.write_user_features(raw / "user_features_pure.csv")
    members = {"KuaiRand-Pure/LICENSE": b"CC BY-SA 4.0\n", "KuaiRand-Pure/load_data_pure.py": b"# loader\n"}
    members |= {f"KuaiRand-Pure/data/{p.name}": p.read_bytes() for p in sorted(raw.iterdir())}
    return tar_gz(members)


def serve_archive(server, monkeypatch, name, filename, data, **changes):
    server.files[f"/{filename}"] = data
    spec = download.ARCHIVES[name]
    fields = {**spec.__dict__, "url": f"{server.url}/{filename}", "md5": hashlib.md5(data).hexdigest(), "size": len(data)}
    monkeypatch.setitem(download.ARCHIVES, name, download.Archive(**(fields | changes)))


def test_fetch_kuairand_unpacks_for_the_converter(server, tmp_path, monkeypatch, capsys):
    serve_archive(server, monkeypatch, "kuairand-pure", "KuaiRand-Pure.tar.gz", kuairand_archive(tmp_path))
    server.cuts = [500, None]  # and the transfer breaks once
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    dest = tmp_path / "downloads"
    download_cli.main(["kuairand-pure", "--dest", str(dest)])
    raw_dir = dest / "KuaiRand-Pure" / "data"
    out = capsys.readouterr()
    assert f"--raw_data_path={raw_dir}" in out.out and "--dataset=kuairand" in out.out
    assert "resuming from byte 500" in out.err
    assert sorted(os.listdir(dest)) == [".kuairand-pure.done", "KuaiRand-Pure", "KuaiRand-Pure.tar.gz"]
    config = yaml.safe_load(open(test_data_kuairand.ROOT / "properties/dataset/kuairand.yaml"))
    options = kuairand.read_options(config)
    kuairand.raw_files(str(raw_dir), options)
    assert len(kuairand.convert(str(raw_dir), options).inter) == 3

    requests = len(server.requests)
    download_cli.main(["kuairand-pure", "--dest", str(dest)])  # again: nothing to do
    assert len(server.requests) == requests and f"--raw_data_path={raw_dir}" in capsys.readouterr().out


def test_fetch_kuairec_zip_prints_a_quoted_path(server, tmp_path, monkeypatch, capsys):
    test_data_kuairec.write_matrix(tmp_path / "src")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("KuaiRec 2.0/data/big_matrix.csv", (tmp_path / "src" / "big_matrix.csv").read_bytes())
        z.writestr("KuaiRec 2.0/LICENSE", "license")
    serve_archive(server, monkeypatch, "kuairec", "KuaiRec.zip", buffer.getvalue())
    dest = tmp_path / "downloads"
    download_cli.main(["kuairec", "--dest", str(dest), "--remove-archive"])
    raw_dir = dest / "KuaiRec 2.0" / "data"
    assert f"--raw_data_path='{raw_dir}'" in capsys.readouterr().out
    assert not (dest / "KuaiRec.zip").exists()
    config = yaml.safe_load(open(test_data_kuairec.ROOT / "properties/dataset/kuairec.yaml"))
    assert len(kuairec.convert(str(raw_dir), kuairec.read_options(config)).inter) == 4


def test_bad_archives_leave_nothing_unpacked(server, tmp_path, monkeypatch):
    dest = tmp_path / "downloads"
    serve_archive(server, monkeypatch, "kuairand-1k", "KuaiRand-1K.tar.gz", tar_gz({"../evil.csv": b"x"}))
    with pytest.raises(download.DownloadError, match="refusing"):
        download.fetch("kuairand-1k", str(dest), out=io.StringIO())
    assert sorted(os.listdir(dest)) == ["KuaiRand-1K.tar.gz"] and not (tmp_path / "evil.csv").exists()

    serve_archive(server, monkeypatch, "kuairand-27k", "KuaiRand-27K.tar.gz", kuairand_archive(tmp_path)[:-200], md5="")
    with pytest.raises(download.DownloadError, match="cannot unpack .*KuaiRand-27K.tar.gz"):
        download.fetch("kuairand-27k", str(dest), out=io.StringIO())
    assert sorted(os.listdir(dest)) == ["KuaiRand-1K.tar.gz", "KuaiRand-27K.tar.gz"]  # no KuaiRand-27K/ folder

    serve_archive(server, monkeypatch, "kuairand-pure", "KuaiRand-Pure.tar.gz", tar_gz({"other/readme.txt": b"x"}))
    with pytest.raises(download.DownloadError, match=r"no file matching log_standard_\*.csv"):
        download.fetch("kuairand-pure", str(dest), out=io.StringIO())
    assert not (dest / "other").exists()


def test_missing_file_messages_name_the_command(tmp_path):
    with pytest.raises(RawDataMissing, match=r"python -m recbole_lda download kuairec --dest DEST"):
        kuairec.raw_files(str(tmp_path), {"kuairec_matrix": "big"})
    with pytest.raises(RawDataMissing, match=r"python -m recbole_lda download kuairand-pure --dest DEST"):
        kuairand.raw_files(str(tmp_path), {"kuairand_random_logs": False})
    assert set(download.ARCHIVES) == {"kuairec", "kuairand-pure", "kuairand-1k", "kuairand-27k"}
    assert download.ARCHIVES["kuairand-pure"].md5 == "0820331067a3784d9691136f772b35a7"
    assert download.ARCHIVES["kuairec"].size == 431_964_858
