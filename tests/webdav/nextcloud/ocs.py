"""The OCS API endpoints a sync client touches: capabilities, the current user (with its quota),
notifications, shares, activity and user status.

Every OCS request needs ``OCS-APIRequest: true`` (else 412 "CSRF check failed"). v1 answers
``statuscode`` 100, v2 200. ``?format=json`` gives JSON, otherwise XML. Capabilities also answer an
anonymous caller (with fewer sections); the other endpoints answer 401 with OCS status 997.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

from .auth import Unauthenticated
from .capabilities import VERSION
from .transport import Request, Response

if TYPE_CHECKING:
    from .server import NextcloudServer

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
XML_CONTENT_TYPE = "application/xml; charset=utf-8"
UNKNOWN_ROUTE = (
    "Invalid query, please check the syntax. API specifications are here: "
    "http://www.freedesktop.org/wiki/Specifications/open-collaboration-services.\n"
)
PROFILE_SCOPES = {
    "phone": "v2-local",
    "address": "v2-local",
    "website": "v2-local",
    "twitter": "v2-local",
    "fediverse": "v2-local",
    "organisation": "v2-local",
    "role": "v2-local",
    "headline": "v2-local",
    "biography": "v2-local",
}


def handle(server: NextcloudServer, request: Request) -> Response:
    version = 1 if request.raw_path.startswith("/ocs/v1.php/") else 2
    route = request.raw_path[len("/ocs/v1.php") :]
    if (request.header("OCS-APIRequest") or "").lower() != "true":
        return Response(412, b'{"message":"CSRF check failed"}', [("Content-Type", JSON_CONTENT_TYPE)])
    ocs = OcsRequest(server, request, version)
    if route == "/cloud/capabilities":
        return ocs.capabilities()
    failure = ocs.login()
    if failure is not None:
        return failure
    routes = {
        "/cloud/user": ocs.current_user,
        "/apps/notifications/api/v2/notifications": ocs.notification_list,
        "/apps/files_sharing/api/v1/shares": ocs.shares,
        "/apps/activity/api/v2/activity/all": ocs.activity,
        "/apps/user_status/api/v1/user_status": ocs.user_status,
        "/core/getapppassword": ocs.app_password,
    }
    endpoint = routes.get(route)
    if endpoint is None:
        return ocs.unknown_route()
    return endpoint()


def php_json(value: Any) -> bytes:
    """JSON as PHP's json_encode writes it: compact, with escaped slashes."""
    return json.dumps(value, separators=(",", ":")).replace("/", "\\/").encode()


class OcsRequest:
    def __init__(self, server: NextcloudServer, request: Request, version: int) -> None:
        self.server = server
        self.request = request
        self.version = version
        self.json = request.query.get("format") == "json"

    def meta(self, status: str = "ok", code: int | None = None, message: str = "OK") -> dict[str, Any]:
        if code is None:
            code = 100 if self.version == 1 else 200
        meta: dict[str, Any] = {"status": status, "statuscode": code, "message": message}
        if self.version == 1:
            meta.update({"totalitems": "", "itemsperpage": ""})
        return meta

    def answer(
        self, data: Any, *, status: int = 200, meta: dict[str, Any] | None = None, etag: bool = False
    ) -> Response:
        document = {"ocs": {"meta": meta or self.meta(), "data": data}}
        if self.json:
            body, content_type = php_json(document), JSON_CONTENT_TYPE
        else:
            body, content_type = _xml(document["ocs"]), XML_CONTENT_TYPE
        headers = [("Content-Type", content_type)]
        if etag:  # the same data has the same ETag in every format and API version
            quoted = f'"{hashlib.md5(php_json(data)).hexdigest()}"'
            if self.request.header("If-None-Match") == quoted:
                return Response(304, b"", [("ETag", quoted), ("Content-Type", content_type)])
            headers.insert(0, ("ETag", quoted))
        return Response(status, body, headers, gzip=True)

    def login(self) -> Response | None:
        """None when the caller is logged in, else the 401 OCS answers (counted as a failed login)."""
        try:
            self.request.user = self.server.authenticate(self.request)
        except Unauthenticated as exc:
            message = "Unauthorised" if exc.wrong else "Current user is not logged in"
            answer = self.answer([], status=401, meta=self.meta("failure", 997, message))
            answer.gzip = False
            if exc.wrong:
                answer.headers.insert(0, ("WWW-Authenticate", 'Basic realm="Authorisation Required"'))
            return answer
        return None

    def capabilities(self) -> Response:
        authenticated = False
        if self.request.header("Authorization") is not None:
            failure = self.login()
            if failure is not None:
                return failure
            authenticated = True
        caps = self.server.capabilities.to_json(self.server.base_url, authenticated=authenticated)
        return self.answer({"version": VERSION, "capabilities": caps}, etag=True)

    def current_user(self) -> Response:
        user = self.request.user
        now = self.server.now()
        data: dict[str, Any] = {
            "enabled": True,
            "id": user,
            "firstLoginTimestamp": now,
            "lastLoginTimestamp": now,
            "lastLogin": now * 1000,
            "backend": "Database",
            "subadmin": [],
            "quota": self.quota(user),
            "manager": "",
            "avatarScope": "v2-federated",
            "email": None,
            "emailScope": "v2-federated",
            "additional_mail": [],
            "additional_mailScope": [],
            "displayname": user,
            "display-name": user,
            "displaynameScope": "v2-federated",
        }
        for field, scope in PROFILE_SCOPES.items():
            data[field] = ""
            data[f"{field}Scope"] = scope
        data.update(
            {
                "profile_enabled": "1",
                "profile_enabledScope": "v2-local",
                "pronouns": "",
                "pronounsScope": "v2-federated",
                "groups": [],
                "language": "en",
                "locale": "",
                "notify_email": None,
                "backendCapabilities": {"setDisplayName": True, "setPassword": True},
            }
        )
        return self.answer(data)

    def quota(self, user: str) -> dict[str, float]:
        """Nextcloud's quota object; -3 means unlimited."""
        with self.server.lock:
            used = self.server.used_bytes(user)
            quota = self.server.quotas.get(user)
        if quota is None:
            return {"free": -3, "used": used, "total": -3, "relative": 0, "quota": -3}
        relative: float = round(used * 100 / quota, 2) if quota else 0
        if relative == int(relative):
            relative = int(relative)  # PHP writes 0, not 0.0
        return {"free": max(0, quota - used), "used": used, "total": quota, "relative": relative, "quota": quota}

    def notification_list(self) -> Response:
        answer = self.answer(list(self.server.notifications), etag=True)
        answer.headers.insert(1, ("X-Nextcloud-User-Status", "online"))
        return answer

    def shares(self) -> Response:
        return self.answer([])

    def activity(self) -> Response:
        answer = self.answer([])
        answer.headers.insert(0, ("ETag", hashlib.md5(b"activity:" + php_json([])).hexdigest()))
        return answer

    def user_status(self) -> Response:
        answer = self.answer([], status=404, meta=self.meta("failure", 404, "No status for the current user"))
        answer.gzip = False
        return answer

    def app_password(self) -> Response:
        meta = self.meta("failure", 403, "You cannot request an new apppassword with an apppassword")
        answer = self.answer([], status=403, meta=meta)
        answer.gzip = False
        return answer

    def unknown_route(self) -> Response:
        body = _xml({"meta": self.meta("failure", 998, UNKNOWN_ROUTE), "data": []})
        return Response(404, body, [("Content-type", "text/xml; charset=UTF-8")])


def _xml(document: dict[str, Any]) -> bytes:
    root = ET.Element("ocs")
    _fill(root, document)
    ET.indent(root, space=" ")
    return b'<?xml version="1.0"?>\n' + ET.tostring(root) + b"\n"


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not str(key).startswith("$"):  # "$comment" is no XML name; Nextcloud's XML has no comments
                _fill(ET.SubElement(element, str(key)), item)
    elif isinstance(value, list):
        for item in value:
            _fill(ET.SubElement(element, "element"), item)
    elif isinstance(value, bool):
        element.text = "1" if value else ""
    elif value is not None:
        element.text = str(value)
