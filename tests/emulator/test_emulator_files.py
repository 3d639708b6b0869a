"""Url fields, Attachments, uploads, thumbnails and downloads through the real client.

The shapes are those of the client's documentation (docs/cookbook/attachments.rst in
shotgunsoftware/python-api: ``this_file`` of web links, uploads and local files) and of its
live tests (an uploaded ``sg_uploaded_movie`` reads back with the Attachment's ``id``).
"""

from __future__ import annotations

import urllib.request

import pytest
import shotgun_api3


@pytest.fixture
def version(sg, project):
    return sg.create("Version", {"code": "sh010_v001", "project": project})


@pytest.fixture
def movie(tmp_path):
    path = tmp_path / "sh010_v001.mov"
    path.write_bytes(b"\x00\x01 not text\r\n--boundary-like--\r\n" * 200)
    return path


def movie_of(sg, version):
    return sg.find_one("Version", [["id", "is", version["id"]]], ["sg_uploaded_movie"])[
        "sg_uploaded_movie"
    ]


# --------------------------------------------------------------------------- web links


def test_a_web_link_reads_back_as_an_attachment_with_its_link_type(sg, version):
    sg.update("Version", version["id"], {"sg_uploaded_movie": {"url": "rvlink://x", "name": "RV"}})
    value = movie_of(sg, version)
    assert value == {
        "content_type": None,
        "link_type": "web",
        "name": "RV",
        "url": "rvlink://x",
        "type": "Attachment",
        "id": value["id"],
    }
    attachment = sg.find_one("Attachment", [["id", "is", value["id"]]], ["this_file", "project"])
    assert attachment["this_file"] == {k: v for k, v in value.items() if k not in ("type", "id")}
    assert attachment["project"]["id"] == version["project"]["id"]


def test_creating_an_attachment_with_a_web_link_as_the_docs_show(sg, project):
    link = {"url": "http://apple.com/itunes", "name": "Apple: iTunes"}
    attachment = sg.create("Attachment", {"this_file": link, "project": project}, ["this_file"])
    assert attachment["this_file"]["link_type"] == "web"
    with pytest.raises(shotgun_api3.Fault, match="this_file cannot be changed"):
        sg.update("Attachment", attachment["id"], {"this_file": {"url": "http://other"}})
    with pytest.raises(shotgun_api3.Fault, match="made with upload"):
        sg.create("Attachment", {"this_file": {"link_type": "upload", "url": "x"}})


def test_an_attachment_given_by_id_is_linked_not_copied(sg, project, version):
    other = sg.create("Version", {"code": "v2", "project": project})
    sg.update("Version", version["id"], {"sg_uploaded_movie": {"url": "https://a/b.mov"}})
    first = movie_of(sg, version)
    sg.update("Version", other["id"], {"sg_uploaded_movie": first})  # a value read back
    assert movie_of(sg, other) == first
    assert len(sg.find("Attachment", [])) == 1


@pytest.mark.parametrize(
    "value, problem",
    [
        ("https://a/b.mov", "expects a dict"),
        ({"name": "no url"}, "needs a 'url' string"),
        ({"type": "Attachment", "id": 999}, "Attachment 999 does not exist"),
        ({"local_path": "/nowhere/x.mov"}, "no LocalStorage has a root"),
    ],
)
def test_an_unusable_url_value_is_a_fault_naming_the_field(sg, version, value, problem):
    with pytest.raises(shotgun_api3.Fault, match=rf"Version\.sg_uploaded_movie.*{problem}"):
        sg.update("Version", version["id"], {"sg_uploaded_movie": value})


# --------------------------------------------------------------------------- local files


@pytest.fixture
def storage(sg):
    return sg.create(
        "LocalStorage",
        {
            "code": "primary",
            "linux_path": "/mnt/projects",
            "mac_path": "/Volumes/projects",
            "windows_path": "P:\\",
        },
    )


def test_a_local_file_gets_the_paths_of_every_platform_from_its_storage(sg, version, storage):
    sg.update(
        "Version",
        version["id"],
        {"sg_uploaded_movie": {"local_path": "/mnt/projects/show/v1.mov", "name": "Better"}},
    )
    value = movie_of(sg, version)
    assert value["link_type"] == "local"
    assert value["name"] == "Better" and value["content_type"] == "video/quicktime"
    assert value["local_path_linux"] == "/mnt/projects/show/v1.mov"
    assert value["local_path_mac"] == "/Volumes/projects/show/v1.mov"
    assert value["local_path_windows"] == "P:\\show\\v1.mov"
    assert value["relative_path"] == "show/v1.mov"
    assert value["local_storage"] == {
        "type": "LocalStorage",
        "id": storage["id"],
        "name": "primary",
    }
    # The client puts this platform's path in local_path and url itself:
    assert value["local_path"] == value["local_path_linux"]
    assert value["url"] == "file:///mnt/projects/show/v1.mov"


def test_a_local_file_by_storage_and_relative_path(sg, version, storage):
    local = {
        "local_storage": {"type": "LocalStorage", "name": "primary"},
        "relative_path": "a/b.exr",
    }
    sg.update("Version", version["id"], {"sg_uploaded_movie": local})
    value = movie_of(sg, version)
    assert value["local_path_windows"] == "P:\\a\\b.exr" and value["name"] == "b.exr"


# --------------------------------------------------------------------------- uploads


def test_an_upload_reads_back_and_downloads_as_on_a_site(sg, version, movie):
    attachment_id = sg.upload(
        "Version", version["id"], str(movie), "sg_uploaded_movie", "Latest QT", "a, b"
    )
    value = movie_of(sg, version)
    assert (value["type"], value["id"], value["link_type"]) == (
        "Attachment",
        attachment_id,
        "upload",
    )
    assert value["name"] == "Latest QT" and value["content_type"] == "video/quicktime"
    assert value["url"].endswith(f"/file_serve/attachment/{attachment_id}")
    content = movie.read_bytes()
    assert sg.download_attachment(value) == content
    assert sg.download_attachment(attachment_id) == content
    target = movie.parent / "copy.mov"
    assert sg.download_attachment(value, file_path=str(target)) == str(target)
    assert target.read_bytes() == content
    attachment = sg.find_one(
        "Attachment", [["id", "is", attachment_id]], ["filename", "file_size", "tag_list"]
    )
    assert attachment["filename"] == "sh010_v001.mov"
    assert (attachment["file_size"], attachment["tag_list"]) == (len(content), ["a", "b"])


def test_an_upload_without_a_field_is_linked_to_the_entity(sg, project, movie):
    note = sg.create("Note", {"subject": "look", "project": project})
    attachment_id = sg.upload("Note", note["id"], str(movie))
    found = sg.find_one("Note", [["id", "is", note["id"]]], ["attachments"])
    assert [a["id"] for a in found["attachments"]] == [attachment_id]


def test_an_upload_logs_its_attachment_and_the_field_change(emulator, sg, version, movie):
    start = emulator.latest_event_id()
    sg.upload("Version", version["id"], str(movie), "sg_uploaded_movie")
    events = sg.find(
        "EventLogEntry", [["id", "greater_than", start]], ["event_type", "attribute_name"]
    )
    kinds = [(e["event_type"], e["attribute_name"]) for e in events]
    assert kinds[0] == ("Shotgun_Attachment_New", None)
    assert ("Shotgun_Attachment_Change", "this_file") in kinds
    assert kinds[-1] == ("Shotgun_Version_Change", "sg_uploaded_movie")


def test_a_failed_upload_or_download_raises_what_the_client_raises(sg, version, movie):
    with pytest.raises(shotgun_api3.ShotgunError, match="Version 999 does not exist"):
        sg.upload("Version", 999, str(movie))
    with pytest.raises(shotgun_api3.ShotgunError, match="not a File/Link field"):
        sg.upload("Version", version["id"], str(movie), "code")
    with pytest.raises(shotgun_api3.ShotgunFileDownloadError):
        sg.download_attachment(99999)
    sg.update("Version", version["id"], {"sg_uploaded_movie": {"url": "https://a/b.mov"}})
    with pytest.raises(shotgun_api3.ShotgunFileDownloadError, match="400"):
        sg.download_attachment(movie_of(sg, version)["id"])  # a web link: nothing to serve


def test_a_maintenance_fault_reaches_uploads_too(emulator, sg, version, movie):
    sg.BACKOFF = 0.01  # the client retries a failed form post itself, sleeping between tries
    emulator.faults.maintenance(30)
    try:
        with pytest.raises(shotgun_api3.ShotgunError, match="Max attempts"):
            sg.upload("Version", version["id"], str(movie))
    finally:
        emulator.faults.clear()
    assert emulator.stats()["faulted"] == 3


# --------------------------------------------------------------------------- thumbnails


def test_a_thumbnail_is_an_image_url_the_client_can_fetch_and_share(sg, project, version, tmp_path):
    image = tmp_path / "thumb.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n fake image")
    thumbnail_id = sg.upload_thumbnail("Version", version["id"], str(image))
    url = sg.find_one("Version", [["id", "is", version["id"]]], ["image"])["image"]
    with urllib.request.urlopen(url) as answer:
        assert answer.read() == image.read_bytes()
        assert answer.headers["Content-Type"] == "image/png"
    others = [sg.create("Version", {"code": f"v{n}", "project": project}) for n in (2, 3)]
    assert sg.share_thumbnail(others, source_entity=version) == thumbnail_id
    for other in others:
        assert sg.find_one("Version", [["id", "is", other["id"]]], ["image"])["image"] == url
    assert sg.update("Version", version["id"], {"image": None})["image"] is None
    with pytest.raises(shotgun_api3.ShotgunError, match="has no image"):
        sg.share_thumbnail(others, source_entity=version)


def test_a_thumbnail_on_a_type_without_one_is_refused(sg, project, tmp_path):
    image = tmp_path / "thumb.png"
    image.write_bytes(b"png")
    step = sg.create("Step", {"code": "comp"})
    with pytest.raises(shotgun_api3.ShotgunError, match="Step has no image field"):
        sg.upload_thumbnail("Step", step["id"], str(image))
