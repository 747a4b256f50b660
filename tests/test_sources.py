"""Every data source ends in the same verified layout: local (three layouts), url, gdrive, synthetic."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
import zipfile
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest

from faceattrs.core.params import DataParams
from faceattrs.data import celeba, sources
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
    """A static mirror with Range support that can cut its first transfer of one file short."""

    cut_first: ClassVar[set[str]] = set()
    ranges: ClassVar[list[str]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if (header := self.headers.get("Range")) is not None:
            self.ranges.append(f"{path.name} {header}")
            start = int(header.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if path.name in self.cut_first:
            self.cut_first.discard(path.name)
            self.wfile.write(data[start : start + len(data) // 3])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops mid-file
            return
        self.wfile.write(data[start:])


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    root.mkdir()
    handler = lambda *a, **k: _Mirror(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Mirror.cut_first, _Mirror.ranges = set(), []
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
