"""``/remote.php/dav/versions/<user>/versions/<fileid>/``: the files_versions app's DAV view.

A file's versions are listed by the mtime each had, the current one included (a GET of that one
answers 404); ``getetag`` is the id without quotes. Restore is a MOVE to ``restore/<any name>``:
content and mtime come back and the version list stays as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .dav import AppRequest, content_disposition, content_type_header, mimetype, multistatus_answer
from .errors import METHOD_NOT_ALLOWED, XML_CONTENT_TYPE, HttpError, not_found
from .props import (
    PropValue,
    collection,
    d,
    http_date,
    multistatus,
    nc,
    parse_xml,
    requested_props,
    response,
    status_response,
)
from .store import FileWrite
from .transport import Request, Response, empty_answer
from .tree import Node, Version, split_path

if TYPE_CHECKING:
    from .server import NextcloudServer

VERSIONS = "/remote.php/dav/versions/"
VERSION_ALLPROP = [d("getlastmodified"), d("getcontentlength"), d("resourcetype"), d("getetag"), d("getcontenttype")]


def handle(server: NextcloudServer, request: Request, rest: str) -> Response:
    versions, parts = VersionsRequest.of_own_view(server, request, rest)
    if not parts:
        return versions.home()
    if parts[0] not in versions.COLLECTIONS:
        raise not_found("")
    if parts[0] == "restore" or len(parts) == 1:
        return versions.plain_collection(parts)
    return versions.file_versions(parts[1], parts[2:])


class VersionsRequest(AppRequest):
    ROOT = VERSIONS
    COLLECTIONS = ("versions", "restore")

    def file_by_id(self, fileid: str) -> tuple[Node, list[str]]:
        """The file with this fileid and its path. :raises HttpError: 404 for folders and unknown ids."""
        for path, node in self.server.roots[self.user].walk():
            if str(node.fileid) == fileid and not node.is_dir:
                return node, split_path(path)
        raise not_found("")

    def file_versions(self, fileid: str, inner: list[str]) -> Response:
        method = self.request.method
        with self.server.lock:
            node, path = self.file_by_id(fileid)
            if not inner:
                if method != "PROPFIND":
                    raise HttpError(405, f"{method} is not allowed here", METHOD_NOT_ALLOWED)
                return self.listing(fileid, node, path)
            version = node.versions.get(int(inner[0])) if inner[0].isdigit() else None
            if version is None:
                raise not_found("")
            if method in ("GET", "HEAD"):
                return self.download(node, path, version)
            if method == "PROPPATCH":
                return self.set_label(fileid, version)
            if method == "MOVE":
                return self.restore(node, path, version)
            if method == "PROPFIND":
                wanted = requested_props(self.request.body()) or VERSION_ALLPROP
                values = self.values(path, version)
                return multistatus_answer(
                    [response(self.href("versions", fileid, inner[0], is_dir=False), values, wanted)]
                )
        raise HttpError(405, f"{method} is not allowed on a version", METHOD_NOT_ALLOWED)

    def listing(self, fileid: str, node: Node, path: list[str]) -> Response:
        wanted = requested_props(self.request.body())
        folder: dict[str, PropValue] = {d("resourcetype"): collection()}
        answers = [response(self.href("versions", fileid), folder, wanted or self.COLLECTION_ALLPROP)]
        for version_id in sorted(node.versions):
            href = self.href("versions", fileid, str(version_id), is_dir=False)
            answers.append(response(href, self.values(path, node.versions[version_id]), wanted or VERSION_ALLPROP))
        return multistatus_answer(answers)

    def values(self, path: list[str], version: Version) -> dict[str, PropValue]:
        values: dict[str, PropValue] = {
            d("getcontentlength"): str(len(version.data)),
            d("getcontenttype"): mimetype(path[-1]),
            d("getlastmodified"): http_date(version.mtime),
            d("getetag"): str(version.mtime),
            d("resourcetype"): None,
            nc("version-author"): self.user,
            nc("has-preview"): "1",
        }
        if version.label is not None:
            values[nc("version-label")] = version.label
        return values

    def download(self, node: Node, path: list[str], version: Version) -> Response:
        if version.mtime == node.mtime:  # the current version is the file itself, not a version
            raise not_found("")
        name = path[-1]
        headers = [
            content_type_header(mimetype(name)),
            ("Last-Modified", http_date(version.mtime)),
            ("ETag", str(version.mtime)),
            ("OC-ETag", str(version.mtime)),
            ("Content-Disposition", content_disposition(name)),
            ("X-Accel-Buffering", "no"),
        ]
        return Response(200, version.data, headers)

    def set_label(self, fileid: str, version: Version) -> Response:
        root = parse_xml(self.request.body())
        statuses: dict[str, int] = {}
        for prop in root.iter(d("prop")):
            for element in prop:
                if element.tag == nc("version-label"):
                    version.label = (element.text or "").strip() or None
                    statuses[element.tag] = 200
                else:
                    statuses[element.tag] = 403
        href = self.href("versions", fileid, str(version.mtime), is_dir=False)
        return Response(207, multistatus([status_response(href, statuses)]), [("Content-Type", XML_CONTENT_TYPE)])

    def restore(self, node: Node, path: list[str], version: Version) -> Response:
        versions = dict(node.versions)
        self.server.write_file(self.user, path, FileWrite(version.data, version.mtime, node.checksum))
        node.versions = versions  # restoring lists the same versions: the one that was current stays
        return empty_answer(201)
