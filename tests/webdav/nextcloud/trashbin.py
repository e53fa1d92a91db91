"""``/remote.php/dav/trashbin/<user>/``: the files_trashbin app's DAV view.

Entries are ``trash/<name>.d<deletion time>``; a file's ``getetag`` is empty there and a folder's is
its deletion time; ``getlastmodified`` is the deletion time; ``oc:id`` is the plain fileid.
Restore is a MOVE to ``restore/<any name>``: the node goes back where it was, renamed
``<name> (restored).<ext>`` when that path is taken. Entries are listed newest first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .dav import AppRequest, content_type_header, lists_members, mimetype, multistatus_answer
from .errors import METHOD_NOT_ALLOWED, HttpError, not_found
from .names import nfc
from .props import PropValue, collection, d, http_date, nc, oc, requested_props, response
from .transport import Request, Response, empty_answer
from .tree import Node, TrashItem, split_path

if TYPE_CHECKING:
    from .server import NextcloudServer

TRASHBIN = "/remote.php/dav/trashbin/"
ITEM_FOLDER_ALLPROP = [d("getlastmodified"), d("resourcetype"), d("getetag")]
ITEM_FILE_ALLPROP = [d("getlastmodified"), d("getcontentlength"), d("resourcetype"), d("getetag"), d("getcontenttype")]


def handle(server: NextcloudServer, request: Request, rest: str) -> Response:
    trash, parts = TrashRequest.of_own_view(server, request, rest)
    if not parts:
        return trash.home()
    if parts[0] == "restore":
        return trash.plain_collection(["restore"])
    if parts[0] != "trash":
        raise not_found("")
    if len(parts) == 1:
        return trash.trash_root()
    return trash.entry(parts[1], parts[2:])


class TrashRequest(AppRequest):
    ROOT = TRASHBIN
    COLLECTIONS = ("restore", "trash")

    def items(self) -> list[TrashItem]:
        return sorted(self.server.trash[self.user], key=lambda item: (-item.deletion_time, item.name))

    def trash_root(self) -> Response:
        method = self.request.method
        with self.server.lock:
            if method == "DELETE":
                self.server.trash[self.user] = []
                return empty_answer(204)
            if method != "PROPFIND":
                raise HttpError(405, f"{method} is not allowed on the trash", METHOD_NOT_ALLOWED)
            wanted = requested_props(self.request.body())
            folder: dict[str, PropValue] = {d("resourcetype"): collection()}
            answers = [response(self.href("trash"), folder, wanted or self.COLLECTION_ALLPROP)]
            if lists_members(self.request):
                for item in self.items():
                    values = self.values(item, item.node, item.original_location)
                    answers.append(
                        response(
                            self.href("trash", item.name, is_dir=item.node.is_dir),
                            values,
                            wanted or self.allprop(item.node),
                        )
                    )
        return multistatus_answer(answers)

    @staticmethod
    def allprop(node: Node) -> list[str]:
        return ITEM_FOLDER_ALLPROP if node.is_dir else ITEM_FILE_ALLPROP

    def values(self, item: TrashItem, node: Node, location: str) -> dict[str, PropValue]:
        values: dict[str, PropValue] = {
            nc("trashbin-filename"): location.rsplit("/", 1)[-1],
            nc("trashbin-original-location"): location,
            nc("trashbin-deletion-time"): str(item.deletion_time),
            nc("trashbin-deleted-by-id"): self.user,
            nc("trashbin-deleted-by-display-name"): self.user,
            oc("size"): str(node.total_size()),
            d("resourcetype"): collection() if node.is_dir else None,
            d("getlastmodified"): http_date(item.deletion_time),
            d("getetag"): str(item.deletion_time) if node.is_dir else "",
            oc("fileid"): str(node.fileid),
            oc("id"): str(node.fileid),
        }
        if not node.is_dir:
            values[d("getcontentlength")] = str(len(node.data))
            values[d("getcontenttype")] = mimetype(location)
        return values

    def find(self, entry: str) -> TrashItem:
        for item in self.server.trash[self.user]:
            if item.name == entry:
                return item
        raise not_found("")

    def entry(self, entry: str, inner: list[str]) -> Response:
        method = self.request.method
        with self.server.lock:
            item = self.find(entry)
            node, location = self.descend(item, inner)
            if method == "PROPFIND":
                return self.entry_listing(item, node, [entry, *inner], location)
            if method in ("GET", "HEAD") and not node.is_dir:
                return self.download(item, node, location)
            if method == "DELETE" and not inner:
                self.server.trash[self.user].remove(item)
                return empty_answer(204)
            if method == "MOVE" and not inner:
                return self.restore(item)
        raise HttpError(405, f"{method} is not allowed in the trash", METHOD_NOT_ALLOWED)

    def descend(self, item: TrashItem, inner: list[str]) -> tuple[Node, str]:
        node, location = item.node, item.original_location
        for name in inner:
            child = node.children.get(nfc(name)) if node.is_dir else None
            if child is None:
                raise not_found("")
            node, location = child, f"{location}/{nfc(name)}"
        return node, location

    def entry_listing(self, item: TrashItem, node: Node, names: list[str], location: str) -> Response:
        wanted = requested_props(self.request.body())
        answers = [
            response(
                self.href("trash", *names, is_dir=node.is_dir),
                self.values(item, node, location),
                wanted or self.allprop(node),
            )
        ]
        if node.is_dir and lists_members(self.request):
            for name in sorted(node.children):
                child = node.children[name]
                values = self.values(item, child, f"{location}/{name}")
                href = self.href("trash", *names, name, is_dir=child.is_dir)
                answers.append(response(href, values, wanted or self.allprop(child)))
        return multistatus_answer(answers)

    def download(self, item: TrashItem, node: Node, location: str) -> Response:
        name = location.rsplit("/", 1)[-1]
        headers = [
            content_type_header(mimetype(name)),
            ("Last-Modified", http_date(item.deletion_time)),
            ("ETag", ""),
            ("Content-Disposition", f'attachment; filename="{name}"'),
            ("X-Accel-Buffering", "no"),
        ]
        return Response(200, node.data, headers)

    def restore(self, item: TrashItem) -> Response:
        destination = unquote(urlsplit(self.request.header("Destination") or "").path)
        if not destination.startswith(f"{TRASHBIN}{self.user}/restore/"):
            raise HttpError(403, "Restore only to the restore collection", METHOD_NOT_ALLOWED)
        parts = split_path(item.original_location)
        parent = self.server.find(self.user, parts[:-1])
        if parent is None or not parent.is_dir:
            parts = parts[-1:]  # the original folder is gone: back into the root
            parent = self.server.roots[self.user]
        parts[-1] = free_name(parent, parts[-1])
        self.server.trash[self.user].remove(item)
        self.server.attach(self.user, parts, item.node)
        return empty_answer(201)


def free_name(parent: Node, name: str) -> str:
    """``keep.txt`` when free, else ``keep (restored).txt`` (then `` (restored 2)`` and so on)."""
    if name not in parent.children:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        stem, extension = name, ""
    suffix = f".{extension}" if extension else ""
    for attempt in range(1, 1000):
        label = "(restored)" if attempt == 1 else f"(restored {attempt})"
        candidate = f"{stem} {label}{suffix}"
        if candidate not in parent.children:
            return candidate
    raise HttpError(409, "No free name to restore to")
