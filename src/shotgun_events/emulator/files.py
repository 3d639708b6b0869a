"""Files on the site: url field values, uploads, thumbnails and downloads, as a site has them.

A site keeps every file or link in an Attachment entity. A url ("File/Link") field holds
one, and reads back as the Attachment's ``this_file`` plus its ``type`` and ``id``: a web
link is ``{"content_type", "link_type": "web", "name", "url", "type": "Attachment",
"id"}``, a local file adds the paths of every platform from the LocalStorage whose root
holds it, an upload's ``url`` is the site's ``/file_serve/attachment/<id>``.
`file_value` turns what a caller writes into that shape. `SiteFiles` is what the client's
form posts and downloads reach: ``upload()`` (``/upload/upload_file``),
``upload_thumbnail()`` (``/upload/publish_thumbnail``), ``share_thumbnail()``
(``/upload/share_thumbnail``), and ``download()`` (``/file_serve/attachment/N`` and
thumbnails). It writes only through the site's
API methods, so every upload logs its events; file contents are kept in memory only.
This module must never speak HTTP; the server parses forms and cookies.
"""

from __future__ import annotations

import datetime
import mimetypes
import re
import secrets
import threading
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from .errors import ApiError, AuthenticationError
from .schema import Field
from .values import Links

if TYPE_CHECKING:
    from .api import Site

ATTACHMENT = "Attachment"
DOWNLOAD_PATH = "/file_serve/attachment/"
THUMBNAIL_PATH = "/thumbnail/"
#: (HTTP status, content type, body) of a download.
Download = Tuple[int, str, bytes]
#: One uploaded form file: (file name, content).
FormFile = Tuple[str, bytes]


def file_value(links: Links, field: Field, value: Any, method: str, uploads: bool = False) -> Any:
    """The ``this_file`` dict for what a caller writes to a url field (ApiError if unusable).

    A web link is ``{"url", "name"?, "content_type"?}``; a local file ``{"local_path"}`` or
    ``{"local_storage", "relative_path"}`` (plus ``name``, ``content_type``). Uploads only
    come from `SiteFiles.upload` (`uploads`), as on a site.
    """
    where = f"API {method}() {field.entity_type}.{field.name}"
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(
            f"{where} is a url field and expects a dict like "
            f'{{"url": "https://...", "name": "..."}} or {{"local_path": "..."}}, got {value!r}'
        )
    if value.get("link_type") == "upload" and not uploads:
        raise ApiError(f"{where}: uploaded files are made with upload(), not set directly")
    if "local_path" in value or "relative_path" in value:
        return _local_file(links, where, value)
    url = value.get("url")
    if not isinstance(url, str) or not url:
        raise ApiError(f"{where}: a link needs a 'url' string (or a 'local_path'), got {value!r}")
    name = value.get("name") or url
    link_type = "upload" if uploads and value.get("link_type") == "upload" else "web"
    return {
        "content_type": value.get("content_type"),
        "link_type": link_type,
        "name": name,
        "url": url,
    }


def _local_file(links: Links, where: str, value: Dict[str, Any]) -> Dict[str, Any]:
    """A local file's paths on every platform, from the LocalStorage whose root holds it."""
    storages = _storages(links)
    local_path = value.get("local_path")
    if isinstance(local_path, str) and local_path:
        found = _storage_for(storages, local_path)
        if found is None:
            roots = "; ".join(
                f"{row.get('code')}: {', '.join(p for p in _roots(row).values() if p)}"
                for _, row in storages
            )
            raise ApiError(
                f"{where}: no LocalStorage has a root that holds {local_path!r} "
                f"(LocalStorage roots: {roots or 'none'})"
            )
        (storage_id, storage), relative = found
    else:
        storage_id, storage = _named_storage(links, where, storages, value.get("local_storage"))
        relative = value.get("relative_path")
        if not isinstance(relative, str) or not relative or "\\" in relative:
            raise ApiError(f"{where}: relative_path must be a '/'-separated path")
        relative = relative.strip("/")
    roots = _roots(storage)
    paths = {
        "local_path_linux": _join(roots["linux"], relative, "/"),
        "local_path_mac": _join(roots["mac"], relative, "/"),
        "local_path_windows": _join(roots["windows"], relative.replace("/", "\\"), "\\"),
    }
    own = local_path or paths["local_path_linux"] or paths["local_path_mac"]
    filename = relative.rsplit("/", 1)[-1]
    name = value.get("name") or filename
    return {
        "content_type": value.get("content_type") or mimetypes.guess_type(filename)[0],
        "link_type": "local",
        "name": name,
        "local_path": own,
        **paths,
        "local_storage": {
            "type": "LocalStorage",
            "id": storage_id,
            "name": storage.get("code"),
        },
        "relative_path": relative,
        "url": f"file://{own}",
    }


def _storages(links: Links) -> List[Tuple[int, Dict[str, Any]]]:
    table = links.store.table("LocalStorage")
    return [(i, table.rows[i]) for i in table.ids if i not in table.retired]


def _roots(storage: Dict[str, Any]) -> Dict[str, Optional[str]]:
    return {
        "linux": storage.get("linux_path"),
        "mac": storage.get("mac_path"),
        "windows": storage.get("windows_path"),
    }


def _storage_for(
    storages: List[Tuple[int, Dict[str, Any]]], path: str
) -> Optional[Tuple[Tuple[int, Dict[str, Any]], str]]:
    """The storage with the longest root holding `path`, and the path relative to it."""
    best: Optional[Tuple[int, Tuple[int, Dict[str, Any]], str]] = None
    for storage in storages:
        for platform, root in _roots(storage[1]).items():
            if not root:
                continue
            windows = platform == "windows"
            given = path.replace("\\", "/").lower() if windows else path
            base = root.replace("\\", "/").rstrip("/")
            base = base.lower() if windows else base
            if given.startswith(base + "/") and (best is None or len(base) > best[0]):
                relative = path.replace("\\", "/")[len(base) + 1 :]
                best = (len(base), storage, relative)
    return None if best is None else (best[1], best[2])


def _named_storage(
    links: Links, where: str, storages: List[Tuple[int, Dict[str, Any]]], given: Any
) -> Tuple[int, Dict[str, Any]]:
    if isinstance(given, dict) and given.get("type") == "LocalStorage":
        for storage_id, row in storages:
            if given.get("id") == storage_id or (
                given.get("name") is not None and given.get("name") == row.get("code")
            ):
                return storage_id, row
    raise ApiError(
        f"{where}: relative_path needs a local_storage "
        '{"type": "LocalStorage", "id": ...} or {..., "name": ...} the site has'
    )


def _join(root: Optional[str], relative: str, separator: str) -> Optional[str]:
    return f"{root.rstrip(separator)}{separator}{relative}" if root else None


class SiteFiles:
    """The site's form endpoints and downloads, working through the site's API methods."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._lock = threading.Lock()
        self._contents: Dict[int, Tuple[str, str, bytes]] = {}  # attachment id -> file
        self._thumbnails: Dict[int, Tuple[str, bytes]] = {}  # thumbnail id -> image
        self._sessions: Dict[str, str] = {}  # session token -> script name

    # --- sessions ----------------------------------------------------------------------

    def session_token(self, script: str) -> Dict[str, str]:
        """What `get_session_token` answers: a token the download cookie must carry."""
        token = secrets.token_hex(16)
        with self._lock:
            self._sessions[token] = script
        return {"session_id": token}

    # --- forms -------------------------------------------------------------------------

    def form(self, path: str, fields: Dict[str, str], files: Dict[str, FormFile], base: str) -> str:
        """Answer one form post the way a site answers it: ``1:<id>`` or ``0`` and why."""
        handler = {
            "/upload/upload_file": self._upload_file,
            "/upload/publish_thumbnail": self._upload_thumbnail,
            "/upload/share_thumbnail": self._share_thumbnail,
        }.get(path)
        if handler is None:
            return f"0\n{path} is not emulated (direct cloud uploads are off on this site)"
        try:
            return f"1:{handler(fields, files, base)}\n"
        except AuthenticationError as error:
            return f"0\n{error.message}"
        except ApiError as error:
            return f"0\n{error.message}"

    def _actor(self, fields: Dict[str, str]) -> Any:
        keys = ("script_name", "script_key", "sudo_as_login", "session_uuid")
        return self.site.authenticate({key: fields[key] for key in keys if fields.get(key)})

    def _target(self, fields: Dict[str, str], what: str) -> Tuple[str, int, Dict[str, Any]]:
        entity_type = fields.get("entity_type") or ""
        try:
            entity_id = int(fields.get("entity_id") or "")
        except ValueError:
            raise ApiError(f"{what}: entity_id must be an integer") from None
        if self.site.schema.entity(entity_type) is None:
            raise ApiError(f"{what}: unknown entity type {entity_type!r}")
        row = self.site.store.active_row(entity_type, entity_id)
        if row is None:
            raise ApiError(f"{what}: {entity_type} {entity_id} does not exist or is retired")
        return entity_type, entity_id, row

    def _upload_file(self, fields: Dict[str, str], files: Dict[str, FormFile], base: str) -> int:
        actor = self._actor(fields)
        entity_type, entity_id, row = self._target(fields, "upload")
        if "file" not in files:
            raise ApiError("upload: the form has no 'file'")
        filename, content = files["file"]
        field_name = fields.get("field_name")
        if field_name:
            field = self.site.schema.field(entity_type, field_name)
            if field is None or field.data_type != "url":
                raise ApiError(f"upload: {entity_type}.{field_name} is not a File/Link field")
        store = self.site.store
        with store.transaction() as tx:
            attachment_id = store.allocate_id(ATTACHMENT)
            name = fields.get("display_name") or filename
            this_file = {
                "link_type": "upload",
                "name": name,
                "content_type": mimetypes.guess_type(filename)[0],
                "url": f"{base}{DOWNLOAD_PATH}{attachment_id}",
            }
            data: Dict[str, Any] = {
                "this_file": this_file,
                "filename": filename,
                "file_size": len(content),
                "project": row.get("project"),
            }
            if fields.get("tag_list"):
                data["tag_list"] = [t.strip() for t in fields["tag_list"].split(",") if t.strip()]
            if fields.get("created_at"):
                data["created_at"] = _utc(fields["created_at"])
            links_to = self.site.schema.field(ATTACHMENT, "attachment_links")
            if not field_name and links_to is not None and entity_type in links_to.valid_types:
                data["attachment_links"] = [{"type": entity_type, "id": entity_id}]
            self.site.create(tx, actor, ATTACHMENT, data, entity_id=attachment_id, uploads=True)
            if field_name:
                linked = {"type": ATTACHMENT, "id": attachment_id}
                self.site.update(tx, actor, entity_type, entity_id, {field_name: linked})
            tx.after_commit.append(
                lambda: self._keep(attachment_id, name, this_file["content_type"], content)
            )
        return attachment_id

    def _keep(self, attachment_id: int, name: str, content_type: Optional[str], data: bytes):
        with self._lock:
            self._contents[attachment_id] = (name, content_type or "application/octet-stream", data)

    def _upload_thumbnail(
        self, fields: Dict[str, str], files: Dict[str, FormFile], base: str
    ) -> int:
        actor = self._actor(fields)
        entity_type, entity_id, _ = self._target(fields, "upload_thumbnail")
        if "thumb_image" not in files:
            raise ApiError("upload_thumbnail: the form has no 'thumb_image'")
        filename, content = files["thumb_image"]
        filmstrip = fields.get("filmstrip", "").lower() in ("true", "1")
        field_name = "filmstrip_image" if filmstrip else "image"
        if self.site.schema.field(entity_type, field_name) is None:
            raise ApiError(f"upload_thumbnail: {entity_type} has no {field_name} field")
        store = self.site.store
        with store.transaction() as tx:
            thumbnail_id = store.allocate_id(ATTACHMENT)  # a site's thumbnails are attachments
            url = f"{base}{THUMBNAIL_PATH}{thumbnail_id}/{_url_safe(filename)}"
            self.site.update(tx, actor, entity_type, entity_id, {field_name: url})
            tx.after_commit.append(lambda: self._keep_thumbnail(thumbnail_id, filename, content))
        return thumbnail_id

    def _keep_thumbnail(self, thumbnail_id: int, filename: str, content: bytes) -> None:
        with self._lock:
            self._thumbnails[thumbnail_id] = (filename, content)

    def _share_thumbnail(
        self, fields: Dict[str, str], files: Dict[str, FormFile], base: str
    ) -> int:
        actor = self._actor(fields)
        filmstrip = fields.get("filmstrip_thumbnail", "").lower() in ("true", "1")
        field_name = "filmstrip_image" if filmstrip else "image"
        source_type, source_id, source = self._named_target(fields.get("source_entity", ""))
        url = source.get(field_name)
        thumbnail_id = _thumbnail_id(url)
        if thumbnail_id is None:
            raise ApiError(f"share_thumbnail: {source_type} {source_id} has no {field_name}")
        targets = [self._named_target(item) for item in fields.get("entities", "").split(",")]
        with self.site.store.transaction() as tx:
            for entity_type, entity_id, _ in targets:
                self.site.update(tx, actor, entity_type, entity_id, {field_name: url})
        return thumbnail_id

    def _named_target(self, text: str) -> Tuple[str, int, Dict[str, Any]]:
        entity_type, _, entity_id = text.strip().rpartition("_")
        return self._target({"entity_type": entity_type, "entity_id": entity_id}, "share_thumbnail")

    # --- downloads ---------------------------------------------------------------------

    def download(self, path: str, session: Optional[str]) -> Download:
        """A GET of a file the site serves: an upload or a thumbnail.

        A session cookie, when sent, must be one `get_session_token` gave; the client sends
        none to an emulator (its cookie's domain holds the port, which cookie matching
        ignores), so a download without one is served.
        """
        if path.startswith(THUMBNAIL_PATH):
            thumbnail_id = _thumbnail_id(path)
            with self._lock:
                found = self._thumbnails.get(thumbnail_id or 0)
            if found is None:
                return 404, "text/plain", b"No such thumbnail."
            filename, content = found
            return 200, mimetypes.guess_type(filename)[0] or "image/jpeg", content
        with self._lock:
            known_session = session in self._sessions
        if session is not None and not known_session:
            return 403, "text/plain", b"Sign in to download files (this _session_id is unknown)."
        try:
            attachment_id = int(path[len(DOWNLOAD_PATH) :].split("/")[0])
        except ValueError:
            return 404, "text/plain", b"No such attachment."
        with self._lock:
            stored = self._contents.get(attachment_id)
        if stored is None:
            row = self.site.store.active_row(ATTACHMENT, attachment_id)
            if row is not None:  # a web link or a local file: nothing the site can serve
                return 400, "text/plain", b"This attachment is not an uploaded file."
            return 404, "text/plain", b"No such attachment."
        _, content_type, content = stored
        return 200, content_type, content


def _thumbnail_id(url: Any) -> Optional[int]:
    if not isinstance(url, str):
        return None
    found = re.search(re.escape(THUMBNAIL_PATH) + r"(\d+)/", url)
    return int(found.group(1)) if found else None


def _url_safe(filename: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", filename) or "thumbnail"


def _utc(text: str) -> str:
    """An ISO datetime from a form as the site's UTC wire form (ApiError if unreadable)."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(f"upload: created_at {text!r} is not an ISO datetime") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
