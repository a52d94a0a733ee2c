"""Download, verify and unpack the public raw datasets: KuaiRec 2.0 and KuaiRand.

    python -m recbole_lda download kuairec|kuairand-pure|kuairand-1k|kuairand-27k --dest DIR

For the named archive (ARCHIVES: the official Zenodo files):
1. Downloads it to `DIR/<archive>.part` with progress on stderr (a tqdm bar on a
   terminal, a status line every 10 s otherwise). A broken transfer
   is resumed from the bytes already there with an HTTP Range request, `--retries` times
   within the run; a run that gives up (or is killed) leaves the .part file, and the same
   command resumes it later. A server that ignores Range restarts from byte 0. A host name
   that does not resolve (no network, a wrong --url) fails at once, without retries.
2. Verifies the size (where known) and the md5 (from the dataset's README, or a pinned
   third-party value for KuaiRec; `--md5` overrides). A mismatch deletes the .part file,
   so the next run starts afresh, and fails with both checksums. Only a verified file is
   renamed to `DIR/<archive>`; an existing verified archive is not downloaded again.
3. Unpacks it into a temporary folder `DIR/.unpack-<name>.tmp-<pid>` (members that
   would land outside it are refused) and moves its top-level entries into DIR, so that
   a half-unpacked archive is never where the converters look. Refuses to overwrite an
   existing entry of DIR.
4. Prints the folder that holds the CSVs (the one with `big_matrix.csv` or
   `log_standard_*.csv`) as the `--raw_data_path=...` to pass to run_recbole_lda.py, and
   records it in `DIR/.<name>.done`, so that running the command again only prints it.

The archive is kept unless `--remove-archive` is given (KuaiRand-27K is large: unpacking
needs room for the archive and its contents at once).
"""

import glob
import hashlib
import http.client
import os
import shutil
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass

from tqdm import tqdm

from dataset_prep.common import _pid_alive
from recbole_lda.utils.fileio import atomic_write_text, check_folder


@dataclass(frozen=True)
class Archive:
    """url; md5 and size (bytes, None = unknown) to verify; kind: "zip" or "tar.gz"; dataset:
    the --dataset name; marker: glob of a file that only the CSV folder holds; source: where
    the checksum comes from."""

    url: str
    md5: str
    size: int
    kind: str
    dataset: str
    marker: str
    source: str


KUAIRAND = "https://zenodo.org/records/10439422/files/"
ARCHIVES = {
    "kuairec": Archive(
        "https://zenodo.org/records/18164998/files/KuaiRec.zip", "261550d472c48eff4990fb13c0e5bcf7", 431_964_858,
        "zip", "kuairec", "big_matrix.csv",
        "md5 and size pinned by a third party (njbabani/kuairec-recsys dvc.lock); the KuaiRec README gives none",
    ),
    "kuairand-pure": Archive(
        KUAIRAND + "KuaiRand-Pure.tar.gz", "0820331067a3784d9691136f772b35a7", 47_432_272,
        "tar.gz", "kuairand", "log_standard_*.csv", "md5 from the KuaiRand README",
    ),
    "kuairand-1k": Archive(
        KUAIRAND + "KuaiRand-1K.tar.gz", "6b0b9c8222d67fcd4c676218edca3f1f", None,
        "tar.gz", "kuairand", "log_standard_*.csv", "md5 from the KuaiRand README",
    ),
    "kuairand-27k": Archive(
        KUAIRAND + "KuaiRand-27K.tar.gz", "3e3c799a24e2d23a4d2c757fbf9adf59", None,
        "tar.gz", "kuairand", "log_standard_*.csv", "md5 from the KuaiRand README",
    ),
}
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download or unpacking that failed; the message says what to do."""


# ---------------------------------------------------------------------------------------
# Transfer


class Progress:
    """Progress of one transfer on `out`: a tqdm bar on a terminal; elsewhere (a log file,
    a pipe) tqdm's status line (size, percent, rate, time left) every 10 s and at the end."""

    EVERY_S = 10.0

    def __init__(self, name, total, initial, out):
        self.name, self.total, self.initial, self.out = name, total, initial, out
        self.start = self.last = time.monotonic()
        self.bar = None
        if hasattr(out, "isatty") and out.isatty():
            self.bar = tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True, file=out,
                            mininterval=0.5, dynamic_ncols=True)

    def update(self, done, final=False):
        """`done` bytes of the file are there; `final`: the transfer has ended."""
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if final:
                self.bar.close()
            return
        now = time.monotonic()
        if final or now - self.last >= self.EVERY_S:
            self.last = now
            line = tqdm.format_meter(done, self.total, now - self.start, prefix=self.name, unit="B",
                                     unit_scale=True, initial=self.initial, ncols=0)
            self.out.write(line + "\n")
            self.out.flush()


def _content_range(header):
    """(start, total) of a Content-Range header 'bytes START-END/TOTAL' (total None if '*')."""
    try:
        unit, _, spec = header.partition(" ")
        span, _, total = spec.partition("/")
        return int(span.split("-")[0]), None if total.strip() == "*" else int(total)
    except ValueError:
        raise DownloadError(f"unexpected Content-Range header {header!r}") from None


def _transfer(url, part, out, timeout):
    """One request: append to `part` from its current size (Range) or rewrite it.
    Returns the total size the server announced (None if unknown). Raises
    ConnectionError when the body ends before the announced length."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"User-Agent": "recbole-lda dataset_prep.download"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None else None
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range", ""))
            if start != have:
                raise DownloadError(f"{url}: asked for bytes from {have}, the server sent from {start}")
            mode = "ab"
        else:
            if have:
                print(f"{url}: the server does not resume (HTTP {response.status}): starting again from 0", file=out)
            have, total, mode = 0, length, "wb"
        expected = length if length is not None else None
        progress = Progress(os.path.basename(part).removesuffix(".part"), total, have, out)
        received = 0
        with open(part, mode) as f:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                received += len(chunk)
                progress.update(have + received)
        progress.update(have + received, final=True)
        if expected is not None and received < expected:
            raise ConnectionError(f"the transfer broke after {have + received:,} bytes of {have + expected:,}")
        return total


def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url, path, md5=None, size=None, retries=5, retry_wait=2.0, timeout=60, out=None):
    """Download `url` to `path` through `path.part`, resuming broken transfers; verify size and md5.

    Args:
        url (str): what to fetch.
        path (str): the final file; written only once verified.
        md5 (str): expected md5 (hex), or None.
        size (int): expected size in bytes, or None (the server's announced size is checked anyway).
        retries (int): how many times a broken transfer is resumed within this call.
        retry_wait (float): seconds before the first retry (doubled each time, at most 60).
        timeout (float): socket timeout in seconds.
        out: where progress and notices go (None = sys.stderr).

    Raises:
        DownloadError: when the transfer keeps failing (the .part file stays, to be resumed
            by the next call), on an HTTP error, or when the size or md5 does not match
            (the .part file is deleted).
    """
    out = out or sys.stderr
    part = path + ".part"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    total = _transfer_with_retries(url, part, size, retries, retry_wait, timeout, out)
    _verify(url, part, size, total, md5, out)
    os.replace(part, path)
    return path


def _transfer_with_retries(url, part, size, retries, retry_wait, timeout, out):
    """Transfer `url` into `part`, resuming after each failure (waits doubling from
    retry_wait, at most 60 s); returns the size the server announced (or None)."""
    total = None
    for attempt in range(retries + 1):
        have = os.path.getsize(part) if os.path.exists(part) else 0
        if size is not None and have == size:
            break
        try:
            return _transfer(url, part, out, timeout) or total
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # nothing left to send: the file is complete (checked later) or too long
                break
            if e.code < 500:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
            error = e
        except urllib.error.URLError as e:
            if isinstance(e.reason, socket.gaierror):  # no name resolution: retrying does not help
                host = urllib.parse.urlsplit(url).hostname
                raise DownloadError(
                    f"{url}: cannot resolve the host name {host!r} ({e.reason.strerror or e.reason}): no network here, "
                    "or a wrong --url; nothing was downloaded") from e
            error = e
        except (ConnectionError, http.client.HTTPException, socket.timeout, OSError) as e:
            error = e
        got = os.path.getsize(part) if os.path.exists(part) else 0
        if attempt == retries:
            kept = (f"with {got:,} bytes in {part}. Run the same command again to resume from there." if got
                    else "; nothing was downloaded: check the network and the URL, then run the same command again.")
            raise DownloadError(f"{url}: {error}; gave up after {retries + 1} attempt(s){' ' if got else ''}{kept}") \
                from error
        wait = min(60.0, retry_wait * 2**attempt)
        print(f"{url}: {error}; resuming from byte {got:,} in {wait:.0f} s (retry {attempt + 1} of {retries})", file=out)
        time.sleep(wait)
    return total


def _verify(url, part, size, total, md5, out):
    """Size (expected and announced) and md5 of the downloaded `part`; a mismatch deletes it."""
    got = os.path.getsize(part)
    for what, expected in (("size", size), ("announced size", total)):
        if expected is not None and got != expected:
            os.remove(part)
            raise DownloadError(f"{url}: downloaded {got:,} bytes, expected {expected:,} ({what}); deleted it, run again")
    if md5:
        print(f"checking the md5 of {part} ...", file=out)
        digest = file_md5(part)
        if digest != md5.lower():
            os.remove(part)
            raise DownloadError(
                f"{url}: md5 mismatch: expected {md5}, got {digest}; the corrupt download was deleted, run again "
                f"(if the publisher has changed the file, pass the new checksum with --md5)"
            )


# ---------------------------------------------------------------------------------------
# Unpacking


def _extract(archive, kind, folder):
    """Extract every member of `archive` into `folder`, refusing paths that leave it."""
    root = os.path.realpath(folder)
    if kind == "zip":
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                target = os.path.realpath(os.path.join(root, name))
                if os.path.isabs(name) or not (target == root or target.startswith(root + os.sep)):
                    raise DownloadError(f"{archive}: member {name!r} would be written outside {folder}; refusing")
            z.extractall(folder)
    else:
        with tarfile.open(archive, "r:gz") as t:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                try:
                    t.extractall(folder, filter="data")
                except tarfile.FilterError as e:
                    raise DownloadError(f"{archive}: unsafe member ({e}); refusing") from e
                return
            for member in t.getmembers():
                target = os.path.realpath(os.path.join(root, member.name))
                if member.issym() or member.islnk() or not (target == root or target.startswith(root + os.sep)):
                    raise DownloadError(f"{archive}: member {member.name!r} is a link or leaves {folder}; refusing")
            t.extractall(folder)


def find_raw_dir(folder, marker):
    """The shallowest folder under `folder` holding a file matching `marker`, or None."""
    best = None
    for dirpath, dirnames, _ in os.walk(folder):
        dirnames.sort()
        if glob.glob(os.path.join(glob.escape(dirpath), marker)):
            if best is None or dirpath.count(os.sep) < best.count(os.sep):
                best = dirpath
    return best


def unpack(archive_path, kind, dest, marker, name):
    """Unpack into DEST through a temporary folder; return the folder holding the CSVs."""
    for entry in os.listdir(dest):  # temporary folders of runs that died
        stem, _, pid = entry.rpartition(".tmp-")
        if stem == f".unpack-{name}" and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(os.path.join(dest, entry), ignore_errors=True)
    tmp = os.path.join(dest, f".unpack-{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        try:
            _extract(archive_path, kind, tmp)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
            raise DownloadError(f"cannot unpack {archive_path} ({e}): delete it and run again") from e
        found = find_raw_dir(tmp, marker)
        if found is None:
            raise DownloadError(f"{archive_path}: no file matching {marker} in the archive; is it the right one?")
        entries = sorted(os.listdir(tmp))
        clash = [e for e in entries if os.path.exists(os.path.join(dest, e))]
        if clash:
            raise DownloadError(f"{dest} already has {clash}: remove them or choose another --dest")
        for entry in entries:
            os.replace(os.path.join(tmp, entry), os.path.join(dest, entry))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return os.path.join(dest, os.path.relpath(found, tmp))


def fetch(name, dest, url=None, md5=None, size=None, retries=5, retry_wait=2.0, remove_archive=False, out=None):
    """Download, verify and unpack archive `name` (a key of ARCHIVES) into `dest`.

    url, md5, size override the archive's (md5="" skips the checksum). Returns the
    folder to pass as raw_data_path.
    """
    out = out or sys.stderr
    if name not in ARCHIVES:
        raise DownloadError(f"unknown archive {name!r}; choose one of {sorted(ARCHIVES)}")
    spec = ARCHIVES[name]
    url = url or spec.url
    md5 = spec.md5 if md5 is None else md5
    size = spec.size if size is None else size
    try:
        check_folder(dest, "--dest")
    except ValueError as err:
        raise DownloadError(str(err)) from None
    dest = os.path.abspath(dest)
    os.makedirs(dest, exist_ok=True)
    done = os.path.join(dest, f".{name}.done")
    if os.path.isfile(done):
        with open(done) as f:
            raw_dir = f.read().strip()
        if find_raw_dir(raw_dir, spec.marker) == raw_dir:
            print(f"{name} is already unpacked in {raw_dir}", file=out)
            return raw_dir
    archive = os.path.join(dest, os.path.basename(url.split("?")[0]))
    if os.path.isfile(archive) and (not md5 or file_md5(archive) == md5.lower()):
        print(f"{archive} is already downloaded and verified", file=out)
    else:
        print(f"downloading {url} ({spec.source}) to {archive}", file=out)
        download(url, archive, md5=md5 or None, size=size, retries=retries, retry_wait=retry_wait, out=out)
    print(f"unpacking {archive} into {dest}", file=out)
    raw_dir = unpack(archive, spec.kind, dest, spec.marker, name)
    atomic_write_text(done, raw_dir + "\n")
    if remove_archive:
        os.remove(archive)
    return raw_dir
