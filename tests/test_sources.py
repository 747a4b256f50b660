"""Every data source ends in the same verified layout: local (three layouts), url, gdrive, synthetic."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from faceattrs.core.errors import InputError
from faceattrs.core.params import DataParams
from faceattrs.data import archive, celeba, sources
from faceattrs.data.archive import ImageArchive
from faceattrs.data.celeba import FormatError
from faceattrs.data.sources import SourceError
from tests.conftest import rewrite_images, unpack_images


def _same_dataset(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(
        celeba.read_attributes(a / celeba.ATTR_FILE), celeba.read_attributes(b / celeba.ATTR_FILE)
    )
    pd.testing.assert_series_equal(
        celeba.read_partition(a / celeba.PARTITION_FILE), celeba.read_partition(b / celeba.PARTITION_FILE)
    )
    first, second = ImageArchive.of(a), ImageArchive.of(b)
    assert first.names() == second.names()
    for name in first.names():
        assert first.read(name) == second.read(name)


def _zip_images(raw: Path, dest: Path) -> None:
    # Deflated, unlike ours, as a rezipped copy might be: reading must not care.
    source = ImageArchive.of(raw)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as out:
        for name in source.names():
            out.writestr(f"{celeba.IMAGE_DIR}/{name}", source.read(name))


def _published(raw: Path, folder: Path) -> dict[str, str]:
    """The release as its hosts serve it: the zip and the text files; returns their md5s."""
    folder.mkdir(parents=True, exist_ok=True)
    _zip_images(raw, folder / celeba.ZIP_FILE)
    for name in celeba.TEXT_FILES:
        shutil.copyfile(raw / name, folder / name)
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_local_copy_in_our_layout_is_linked_not_copied(synthetic_raw, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    counts = sources.fetch(
        DataParams(source="local", local={"path": str(synthetic_raw)}), out, tmp_path / "dl", progress=False
    )
    assert counts["images"] == 400
    _same_dataset(synthetic_raw, out)
    assert (out / celeba.ZIP_FILE).stat().st_ino == (synthetic_raw / celeba.ZIP_FILE).stat().st_ino


def test_local_unpacked_folder_is_packed(synthetic_raw, tmp_path):
    unpacked = tmp_path / "unpacked"
    unpack_images(synthetic_raw, unpacked / celeba.IMAGE_DIR)
    for name in celeba.TEXT_FILES:
        shutil.copyfile(synthetic_raw / name, unpacked / name)
    out = tmp_path / "out"
    out.mkdir()
    sources.fetch(DataParams(source="local", local={"path": str(unpacked)}), out, tmp_path / "dl", progress=False)
    _same_dataset(synthetic_raw, out)


def test_local_zip_and_text_files(synthetic_raw, tmp_path):
    _published(synthetic_raw, tmp_path / "release")
    out = tmp_path / "out"
    out.mkdir()
    sources.fetch(
        DataParams(source="local", local={"path": str(tmp_path / "release")}), out, tmp_path / "dl", progress=False
    )
    _same_dataset(synthetic_raw, out)


def test_local_kaggle_csv_layout(synthetic_raw, tmp_path):
    kaggle = tmp_path / "kaggle"
    unpack_images(synthetic_raw, kaggle / celeba.IMAGE_DIR / celeba.IMAGE_DIR)
    labels = celeba.read_attributes(synthetic_raw / celeba.ATTR_FILE) * 2 - 1
    labels.to_csv(kaggle / "list_attr_celeba.csv")
    celeba.read_partition(synthetic_raw / celeba.PARTITION_FILE).rename("partition").to_csv(
        kaggle / "list_eval_partition.csv"
    )
    celeba.read_bbox(synthetic_raw / celeba.BBOX_FILE).to_csv(kaggle / "list_bbox_celeba.csv")
    celeba.read_landmarks(synthetic_raw / celeba.LANDMARKS_FILE).to_csv(kaggle / "list_landmarks_align_celeba.csv")
    out = tmp_path / "out"
    out.mkdir()
    counts = sources.fetch(
        DataParams(source="local", local={"path": str(kaggle)}), out, tmp_path / "dl", progress=False
    )
    assert counts["identities"] is None  # the Kaggle layout has no identity file
    _same_dataset(synthetic_raw, out)
    assert (out / celeba.ATTR_FILE).read_bytes() == (synthetic_raw / celeba.ATTR_FILE).read_bytes()
    pd.testing.assert_frame_equal(
        celeba.read_bbox(out / celeba.BBOX_FILE), celeba.read_bbox(synthetic_raw / celeba.BBOX_FILE)
    )


def test_a_malformed_local_file_is_named_where_the_user_keeps_it(synthetic_raw, tmp_path):
    release = tmp_path / "my celeba"
    _published(synthetic_raw, release)
    lines = (release / celeba.ATTR_FILE).read_bytes().split(b"\r\n")
    lines[7] = lines[7].replace(b" 1", b" 2", 1)  # line 8
    (release / celeba.ATTR_FILE).write_bytes(b"\r\n".join(lines))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FormatError) as caught:
        sources.fetch(DataParams(source="local", local={"path": str(release)}), out, tmp_path / "dl", progress=False)
    assert str(caught.value).startswith(f"{release / celeba.ATTR_FILE}:8: values must be -1 or 1")


def test_a_converted_kaggle_file_is_named_as_the_csv_the_user_gave(synthetic_raw, tmp_path):
    kaggle = tmp_path / "kaggle"
    unpack_images(synthetic_raw, kaggle / celeba.IMAGE_DIR / celeba.IMAGE_DIR)
    (celeba.read_attributes(synthetic_raw / celeba.ATTR_FILE) * 2 - 1).to_csv(kaggle / "list_attr_celeba.csv")
    partition = celeba.read_partition(synthetic_raw / celeba.PARTITION_FILE).rename("partition")
    partition.drop(partition.index[5]).to_csv(kaggle / "list_eval_partition.csv")  # one image unlisted
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FormatError, match="lists other files") as caught:
        sources.fetch(DataParams(source="local", local={"path": str(kaggle)}), out, tmp_path / "dl", progress=False)
    assert str(caught.value).startswith(f"{kaggle / 'list_eval_partition.csv'}: ")
    assert str(out) not in str(caught.value)


def test_local_kaggle_bad_row_names_file_and_line(synthetic_raw, tmp_path):
    kaggle = tmp_path / "kaggle"
    (kaggle / celeba.IMAGE_DIR).mkdir(parents=True)
    labels = celeba.read_attributes(synthetic_raw / celeba.ATTR_FILE) * 2 - 1
    labels.iloc[3, 5] = 0
    labels.to_csv(kaggle / "list_attr_celeba.csv")
    with pytest.raises(celeba.FormatError, match=r"list_attr_celeba.csv:5: values must be -1 or 1"):
        sources.fetch(
            DataParams(source="local", local={"path": str(kaggle)}), tmp_path, tmp_path / "dl", progress=False
        )


def test_missing_images_are_listed(raw_copy, tmp_path):
    rewrite_images(raw_copy, drop=("000010.jpg", "000011.jpg"))
    with pytest.raises(SourceError, match=r"2 of 400 images .* missing, e.g. 000010.jpg, 000011.jpg"):
        sources.verify_layout(raw_copy)


class _Mirror(http.server.SimpleHTTPRequestHandler):
    """A static mirror with Range support that can misbehave per file name: cut a transfer short, trickle,
    send bytes without end, or answer a Range request from the wrong offset."""

    cut_first: ClassVar[set[str]] = set()
    trickle: ClassVar[set[str]] = set()
    endless: ClassVar[set[str]] = set()
    wrong_range: ClassVar[set[str]] = set()
    ranges: ClassVar[list[str]] = []
    authorization: ClassVar[list[str]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        if (auth := self.headers.get("Authorization")) is not None:
            self.authorization.append(auth)
        path = Path(self.translate_path(self.path))
        if path.name in self.endless:
            return self._endless()
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if (header := self.headers.get("Range")) is not None:
            self.ranges.append(f"{path.name} {header}")
            start = int(header.split("=")[1].split("-")[0])
            if path.name in self.wrong_range:
                start = 0  # a server that ignores the offset but still claims a partial answer
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
            self._body(path.name, data[start:])

    def _body(self, name: str, data: bytes) -> None:
        if name in self.cut_first:
            self.cut_first.discard(name)
            self.wfile.write(data[: len(data) // 3])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops mid-file
            return
        if name in self.trickle:  # one byte at a time, each well inside any read timeout
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                time.sleep(0.05)
            return
        self.wfile.write(data)

    def _endless(self) -> None:
        self.send_response(200)  # no Content-Length: the body ends when the connection does
        self.end_headers()
        block = b"000001.jpg 0\r\n" * 4096
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(1000):  # 56 MB, near enough endless for a 2.8 MB file, and a bounded disk in tests
                self.wfile.write(block)


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    root.mkdir()
    handler = lambda *a, **k: _Mirror(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Mirror.cut_first, _Mirror.trickle, _Mirror.endless, _Mirror.wrong_range = set(), set(), set(), set()
    _Mirror.ranges, _Mirror.authorization = [], []
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_source_downloads_resumes_and_verifies(synthetic_raw, tmp_path, mirror):
    root, base = mirror
    md5 = _published(synthetic_raw, root)
    _Mirror.cut_first = {celeba.ZIP_FILE}
    out = tmp_path / "out"
    out.mkdir()
    params = DataParams(source="url", url={"base": base, "md5": md5, "retries": 2, "timeout_s": 10})
    sources.fetch(params, out, tmp_path / "dl", progress=False)
    _same_dataset(synthetic_raw, out)
    assert any(r.startswith(f"{celeba.ZIP_FILE} bytes=") and not r.endswith("=0-") for r in _Mirror.ranges)
    assert not list((tmp_path / "dl").glob("*.part"))


def test_url_resumes_a_part_left_by_a_killed_run(tmp_path, mirror):
    root, base = mirror
    payload = bytes(range(256)) * 4000
    (root / "blob.bin").write_bytes(payload)
    dest = tmp_path / "blob.bin"
    dest.with_name("blob.bin.part").write_bytes(payload[:1000])
    sources.http_download(f"{base}/blob.bin", dest, hashlib.md5(payload).hexdigest(), progress=False)
    assert dest.read_bytes() == payload
    assert _Mirror.ranges == ["blob.bin bytes=1000-"]


def test_url_checksum_mismatch_leaves_nothing_that_looks_complete(tmp_path, mirror):
    root, base = mirror
    (root / celeba.ATTR_FILE).write_bytes(b"not the file you want\r\n")
    dest = tmp_path / "dl" / celeba.ATTR_FILE
    with pytest.raises(SourceError, match=r"md5 mismatch for list_attr_celeba.txt: expected 75e246fa"):
        sources.http_download(
            f"{base}/{celeba.ATTR_FILE}", dest, sources.PUBLISHED_MD5[celeba.ATTR_FILE], progress=False
        )
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


def test_url_html_page_is_recognised(tmp_path, mirror):
    root, base = mirror
    (root / celeba.ZIP_FILE).write_text("<!DOCTYPE html><html><body>Google Drive - Quota exceeded</body></html>")
    dest = tmp_path / celeba.ZIP_FILE
    with pytest.raises(SourceError, match=r"HTML page instead of img_align_celeba\.zip"):
        sources.http_download(f"{base}/{celeba.ZIP_FILE}", dest, None, progress=False)
    assert not dest.exists()


def test_url_missing_file_is_an_http_error(tmp_path, mirror):
    _, base = mirror
    with pytest.raises(SourceError, match="HTTP 404"):
        sources.http_download(f"{base}/nothing.zip", tmp_path / "nothing.zip", None, progress=False)


def test_gdrive_source_uses_the_published_ids(synthetic_raw, tmp_path, monkeypatch):
    """Google Drive cannot be reached here: the downloader is replaced by one serving local files."""
    release = tmp_path / "release"
    md5 = _published(synthetic_raw, release)
    by_id = {f.gdrive_id: f.name for f in celeba.PUBLISHED_FILES}
    asked = []

    def fake_download(file_id, root, filename=None, md5=None):
        asked.append(file_id)
        shutil.copyfile(release / by_id[file_id], Path(root) / filename)

    import torchvision.datasets.utils as tv_utils

    monkeypatch.setattr(tv_utils, "download_file_from_google_drive", fake_download)
    monkeypatch.setattr(sources, "PUBLISHED_MD5", md5)
    out = tmp_path / "out"
    out.mkdir()
    sources.fetch(DataParams(source="gdrive"), out, tmp_path / "dl", progress=False)
    _same_dataset(synthetic_raw, out)
    assert set(asked) == {f.gdrive_id for f in celeba.PUBLISHED_FILES}


def test_gdrive_quota_page_is_reported(tmp_path, monkeypatch):
    def quota_page(file_id, root, filename=None, md5=None):
        (Path(root) / filename).write_text("<html><head><title>Google Drive - Quota exceeded</title></head></html>")

    import torchvision.datasets.utils as tv_utils

    monkeypatch.setattr(tv_utils, "download_file_from_google_drive", quota_page)
    (tmp_path / "dl").mkdir()
    with pytest.raises(SourceError, match=r"HTML page instead of img_align_celeba\.zip"):
        sources.fetch(DataParams(source="gdrive"), tmp_path / "out", tmp_path / "dl", progress=False)
    assert not (tmp_path / "dl" / celeba.ZIP_FILE).exists()


# ---------------------------------------------------------------- hostile archives, folders and servers


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as out:
        for name, data in members.items():
            out.writestr(name, data)
    return path


def _refused_without_reading(path: Path, match: str) -> InputError:
    """Opening ``path`` as an image archive fails with ``match``, having allocated far less than any member."""
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=match) as caught:
            ImageArchive(path).names()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, f"{peak} bytes allocated: the member was read"
    return caught.value


def test_a_zip_member_over_the_size_cap_is_refused_by_name_before_it_is_read(tmp_path):
    # 51 KB on disk, 50 MB inside: the bomb that used to come back whole from read().
    path = _zip(tmp_path / "bomb.zip", {"img_align_celeba/000001.jpg": bytes(50_000_000)})
    assert path.stat().st_size < 100_000
    err = _refused_without_reading(path, r"bomb\.zip: member img_align_celeba/000001\.jpg is 50000000 bytes")
    assert isinstance(err, archive.MemberTooLarge)


def test_a_zip_member_with_an_absurd_compression_ratio_is_refused(tmp_path):
    # Under the size cap, but 4 MB of zeros in 4 KB: no JPEG deflates like that.
    path = _zip(tmp_path / "ratio.zip", {"img_align_celeba/000001.jpg": bytes(4_000_000)})
    err = _refused_without_reading(path, r"member img_align_celeba/000001\.jpg .*compressed \d+x")
    assert isinstance(err, archive.MemberTooLarge)


def test_jpeg_members_pass_the_caps_stored_or_deflated(tmp_path):
    # A flat picture is the most compressible JPEG there is; noise at quality 100 the largest at 178x218.
    flat, noise = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (178, 218), (90, 60, 40)).save(flat, "JPEG", quality=100)
    pixels = np.random.default_rng(0).integers(0, 256, (218, 178, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(noise, "JPEG", quality=100)
    members = {"img_align_celeba/000001.jpg": flat.getvalue(), "img_align_celeba/000002.jpg": noise.getvalue()}
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        images = ImageArchive(_zip(tmp_path / f"ok{method}.zip", members, method))
        assert [images.read(n) for n in images.names()] == list(members.values())


def test_two_members_with_one_base_name_are_refused_naming_both(synthetic_raw, tmp_path):
    first = ImageArchive.of(synthetic_raw).read("000002.jpg")
    path = _zip(tmp_path / "twice.zip", {"a/000002.jpg": first, "b/000002.jpg": b"another picture"})
    with pytest.raises(InputError, match=r"twice\.zip: a/000002\.jpg and b/000002\.jpg share the name 000002\.jpg"):
        ImageArchive(path).read("000002.jpg")


def _unpacked(synthetic_raw: Path, root: Path) -> Path:
    unpack_images(synthetic_raw, root / celeba.IMAGE_DIR)
    for name in celeba.TEXT_FILES:
        shutil.copyfile(synthetic_raw / name, root / name)
    return root


@pytest.mark.timeout(20)  # a FIFO read the old way never ends
@pytest.mark.parametrize(
    "where, kind",
    [
        (f"{celeba.IMAGE_DIR}/000002.jpg", "symlink"),
        (f"{celeba.IMAGE_DIR}/000003.jpg", "fifo"),
        (celeba.PARTITION_FILE, "symlink"),
        (celeba.IDENTITY_FILE, "fifo"),
    ],
)
def test_a_symlink_or_special_file_in_a_local_folder_is_refused_by_path(synthetic_raw, tmp_path, where, kind):
    root = _unpacked(synthetic_raw, tmp_path / "celeba")
    victim = root / where
    outside = tmp_path / "elsewhere.txt"
    shutil.copyfile(victim, outside) if victim.suffix == ".txt" else outside.write_text("not a picture\n")
    victim.unlink()
    victim.symlink_to(outside) if kind == "symlink" else os.mkfifo(victim)
    out = tmp_path / "out"
    out.mkdir()
    what = "a symbolic link" if kind == "symlink" else "not a regular file"
    with pytest.raises(SourceError, match=rf"{re.escape(str(victim))}: {what}") as caught:
        sources.fetch(DataParams(source="local", local={"path": str(root)}), out, tmp_path / "dl", progress=False)
    assert isinstance(caught.value, sources.NotARegularFile)


def _kaggle(synthetic_raw: Path, root: Path) -> Path:
    unpack_images(synthetic_raw, root / celeba.IMAGE_DIR / celeba.IMAGE_DIR)
    (celeba.read_attributes(synthetic_raw / celeba.ATTR_FILE) * 2 - 1).to_csv(root / "list_attr_celeba.csv")
    partition = celeba.read_partition(synthetic_raw / celeba.PARTITION_FILE).rename("partition")
    partition.to_csv(root / "list_eval_partition.csv")
    return root


def _fetch_local(root: Path, tmp_path: Path) -> dict:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return sources.fetch(DataParams(source="local", local={"path": str(root)}), out, tmp_path / "dl", progress=False)


def test_a_kaggle_layout_without_its_partition_csv_is_named(synthetic_raw, tmp_path):
    root = _kaggle(synthetic_raw, tmp_path / "kaggle")
    (root / "list_eval_partition.csv").unlink()
    with pytest.raises(SourceError, match=rf"{re.escape(str(root))}: .*no list_eval_partition\.csv"):
        _fetch_local(root, tmp_path)


def test_a_non_ascii_file_name_in_a_kaggle_csv_is_named_with_its_line(synthetic_raw, tmp_path):
    root = _kaggle(synthetic_raw, tmp_path / "kaggle")
    for name in ("list_attr_celeba.csv", "list_eval_partition.csv"):
        path = root / name
        path.write_text(path.read_text().replace("000004.jpg", "00000\u00e9.jpg"), encoding="utf-8")
    images = root / celeba.IMAGE_DIR / celeba.IMAGE_DIR
    (images / "000004.jpg").rename(images / "00000\u00e9.jpg")
    with pytest.raises(FormatError, match=r"list_attr_celeba\.csv:5: file name '00000\u00e9\.jpg' is not ASCII"):
        _fetch_local(root, tmp_path)


def test_a_utf8_bom_in_a_kaggle_csv_is_named(synthetic_raw, tmp_path):
    root = _kaggle(synthetic_raw, tmp_path / "kaggle")
    path = root / "list_attr_celeba.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Excel saves "CSV UTF-8"
    with pytest.raises(FormatError, match=r"list_attr_celeba\.csv:1: .*UTF-8 byte-order mark"):
        _fetch_local(root, tmp_path)


def test_a_url_base_without_a_scheme_is_named(tmp_path):
    params = DataParams(source="url", url={"base": "mirror.example.org/celeba"})
    with pytest.raises(SourceError, match=r"data\.url\.base: 'mirror\.example\.org/celeba' is not an http\(s\) URL"):
        sources.fetch(params, tmp_path / "out", tmp_path / "dl", progress=False)


@pytest.mark.timeout(30)  # without a deadline, the trickle takes 100 s
def test_a_trickling_server_meets_a_deadline_for_the_whole_file(tmp_path, mirror):
    root, base = mirror
    (root / "blob.bin").write_bytes(bytes(range(250)) * 8)
    _Mirror.trickle = {"blob.bin"}
    dest = tmp_path / "blob.bin"
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"blob\.bin: not done within the deadline of [\d.]+ s") as caught:
        sources.http_download(f"{base}/blob.bin", dest, None, timeout=1.0, retries=3, progress=False)
    assert time.monotonic() - started < 10
    assert isinstance(caught.value, sources.DeadlineExceeded)
    assert not dest.exists()


def test_an_endless_answer_stops_at_the_published_size_before_the_md5_check(synthetic_raw, tmp_path, mirror):
    root, base = mirror
    md5 = _published(synthetic_raw, root)
    _Mirror.endless = {celeba.PARTITION_FILE}
    params = DataParams(source="url", url={"base": base, "md5": md5, "retries": 0, "timeout_s": 10})
    with pytest.raises(SourceError, match=r"list_eval_partition\.txt: more than [\d,]+ bytes") as caught:
        sources.fetch(params, tmp_path / "out", tmp_path / "dl", progress=False)
    assert isinstance(caught.value, sources.TooLarge)
    assert not list((tmp_path / "dl").glob(f"{celeba.PARTITION_FILE}*"))


def test_a_partial_answer_from_the_wrong_offset_is_refused(tmp_path, mirror):
    root, base = mirror
    payload = bytes(range(256)) * 40
    (root / "blob.bin").write_bytes(payload)
    _Mirror.wrong_range = {"blob.bin"}
    dest = tmp_path / "blob.bin"
    dest.with_name("blob.bin.part").write_bytes(payload[:1000])
    with pytest.raises(SourceError, match=r"asked for bytes 1000- and got Content-Range 'bytes 0-10239/10240'"):
        sources.http_download(f"{base}/blob.bin", dest, None, progress=False)
    assert not dest.exists()
    assert dest.with_name("blob.bin.part").read_bytes() == payload[:1000]  # kept as it was: a rerun resumes


def test_a_missing_file_is_an_http_status_error_by_type(tmp_path, mirror):
    _, base = mirror
    with pytest.raises(SourceError) as caught:
        sources.http_download(f"{base}/nothing.zip", tmp_path / "nothing.zip", None, progress=False)
    assert isinstance(caught.value, sources.HttpStatusError) and caught.value.status == 404


def test_credentials_in_the_url_reach_the_server_but_no_message(synthetic_raw, tmp_path, mirror):
    root, base = mirror
    md5 = _published(synthetic_raw, root)
    (root / celeba.IDENTITY_FILE).unlink()  # a required file: the download fails, and says which
    secret = base.replace("http://", "http://reader:s3cret@")
    params = DataParams(source="url", url={"base": secret, "md5": md5, "retries": 0, "timeout_s": 10})
    with pytest.raises(SourceError, match="HTTP 404") as caught:
        sources.fetch(params, tmp_path / "out", tmp_path / "dl", progress=False)
    assert "s3cret" not in str(caught.value) and "reader" not in str(caught.value)
    assert f"{base}/{celeba.IDENTITY_FILE}" in str(caught.value)
    assert _Mirror.authorization and all(a == "Basic cmVhZGVyOnMzY3JldA==" for a in _Mirror.authorization)


def test_credentials_in_the_url_stay_out_of_the_download_report(synthetic_raw, tmp_path, mirror):
    from tests.test_stages import stage

    root, base = mirror
    md5 = _published(synthetic_raw, root)
    secret = base.replace("http://", "http://reader:s3cret@")
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"data": {"source": "url", "url": {"base": secret, "md5": md5, "timeout_s": 10}}})
    )
    result = stage("download", "--raw", "raw", "--downloads", "dl", "--report", "download.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "download.json").read_text()
    assert "s3cret" not in report and "reader" not in report and "s3cret" not in result.stdout + result.stderr
    assert json.loads(report)["params"]["url"]["base"] == base
    assert _Mirror.authorization
