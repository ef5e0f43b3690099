"""The node's local API on a Unix socket: length-prefixed LocalRequest/LocalResponse.

The socket is served with ``asyncio.start_unix_server`` rather than gRPC so
that the node can read the caller's uid with ``SO_PEERCRED`` (grpcio does not
expose it) and record which local user asked. Each request is logged to the
node's own store with uid, operation and outcome code, never with contents.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import time
from pathlib import Path

from google.protobuf.message import DecodeError

from olievlek import i18n, logs
from olievlek.clock import now_ms
from olievlek.errors import OlievlekError
from olievlek.framing import FrameError, read_frame, write_frame
from olievlek.i18n import _
from olievlek.ratelimit import OncePerInterval
from olievlek.v1 import local_pb2

from .access import ADMINISTRATOR, ROLE_REQUEST_TTL_S, Caller, authorise
from .handlers import NodeHandlers
from .intake import Intake
from .liaison import Liaison
from .monitoring import Monitoring
from .request_error import RequestError
from .retention import Retention

log = logs.get("node.local")

CLIENT_ERROR_LOG_S = 60.0

_PEERCRED = struct.Struct("3i")


def peer_uid(writer: asyncio.StreamWriter) -> int:
    sock: socket.socket = writer.get_extra_info("socket")
    _pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return int(uid)


class LocalApi:
    """Serves the node's handlers to local users."""

    def __init__(self, handlers: NodeHandlers, retention: Retention, intake: Intake, path: Path,
                 administrators: frozenset[int] = frozenset(), socket_group: str | None = None,
                 liaison: Liaison | None = None, monitoring: Monitoring | None = None,
                 language: str = i18n.DEFAULT, single_administrator: bool = False,
                 role_request_ttl_s: float = ROLE_REQUEST_TTL_S) -> None:
        self._language = language
        self._single_administrator = single_administrator
        self._role_request_ttl_s = role_request_ttl_s
        self._liaison = liaison
        assert monitoring is not None
        self._monitoring = monitoring
        self._handlers = handlers
        self._retention = retention
        self._intake = intake
        self._path = path
        self._administrators = administrators
        self._socket_group = socket_group
        self._server: asyncio.AbstractServer | None = None
        # Roles per uid, read once: every request needs them; a user change clears the cache.
        self._callers: dict[int, Caller] = {}
        self._client_errors = OncePerInterval(CLIENT_ERROR_LOG_S, time.monotonic)

    async def start(self) -> None:
        if self._path.exists():
            self._path.unlink()
        self._server = await asyncio.start_unix_server(self._client, path=str(self._path))
        os.chmod(self._path, 0o660)  # the node's users reach it through the socket's group
        if self._socket_group:
            shutil.chown(self._path, group=self._socket_group)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._path.exists():
            self._path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid = peer_uid(writer)
        try:
            while True:
                try:
                    frame = await read_frame(reader)
                except FrameError as exc:
                    if not str(exc).startswith("stream ended"):  # a client closing is no error
                        self._client_error(uid, "bad_frame", str(exc))
                    return
                response = await self._dispatch(uid, frame)
                await write_frame(writer, response.SerializeToString())
        finally:
            writer.close()

    async def _dispatch(self, uid: int, frame: bytes) -> local_pb2.LocalResponse:
        request = local_pb2.LocalRequest()
        op = "malformed"
        token = i18n.for_request(self._language)
        try:
            try:
                request.ParseFromString(frame)
            except DecodeError:
                raise RequestError("malformed", _("the request is not a well-formed LocalRequest")) from None
            op = request.WhichOneof("request") or "empty"
            if request.lang:
                i18n.end_request(token)
                token = i18n.for_request(request.lang)
            caller = await self._caller(uid)
            authorise(caller, op)
            response = await self._handle(request, op, caller)
            outcome = "ok"
        except RequestError as exc:
            response, outcome = local_pb2.LocalResponse(error=local_pb2.LocalError(
                code=exc.local_code, message=exc.in_language(i18n._))), exc.local_code
        except OlievlekError as exc:
            response, outcome = local_pb2.LocalResponse(error=local_pb2.LocalError(code=str(exc.code),
                                                                                   message=exc.message)), str(exc.code)
        except Exception:
            log.exception("local.failed", op=op)
            response = local_pb2.LocalResponse(error=local_pb2.LocalError(code="internal",
                                                                          message="internal error; see node log"))
            outcome = "internal"
        finally:
            i18n.end_request(token)
        await self._handlers.store.log_request(uid, op, outcome, now_ms())
        if op in ("malformed", "empty"):
            self._client_error(uid, op, outcome)
        else:
            log.info("local.request", uid=uid, op=op, outcome=outcome)
        return response

    def _client_error(self, uid: int, what: str, detail: str) -> None:
        """A local client's error: logged once per user per interval (with how many were not), no traceback."""
        key = f"{uid}:{what}"
        if self._client_errors.allow(key):
            log.warning("local.client_error", uid=uid, error=what, detail=detail,
                        since_last=self._client_errors.take_suppressed(key))

    async def _caller(self, uid: int) -> Caller:
        cached = self._callers.get(uid)
        if cached is not None:
            return cached
        held = await self._handlers.store.roles_of(uid)
        roles = {r for r, _ in held} | ({ADMINISTRATOR} if uid in self._administrators else set())
        caller = Caller(uid, frozenset(roles), frozenset(a for _, a in held if a))
        self._callers[uid] = caller
        return caller

    async def _handle(self, request: local_pb2.LocalRequest, op: str, caller: Caller) -> local_pb2.LocalResponse:
        h = self._handlers
        if op == "case_open":
            return local_pb2.LocalResponse(case_open=await h.case_open(request.case_open))
        if op == "alert_move":
            return local_pb2.LocalResponse(alert_move=await h.alert_move(request.alert_move))
        if op == "inbox_list":
            return local_pb2.LocalResponse(inbox_list=await h.inbox_list())
        if op == "identify":
            return local_pb2.LocalResponse(identify=await h.identify(request.identify))
        if op == "outbox_list":
            return local_pb2.LocalResponse(outbox_list=await h.outbox_list())
        if op == "case_show":
            return local_pb2.LocalResponse(case_show=await h.case_show(caller, request.case_show))
        if op == "case_list":
            return local_pb2.LocalResponse(case_list=await h.case_list(caller))
        if op == "case_assign":
            return local_pb2.LocalResponse(case_assign=await h.case_assign(request.case_assign))
        if op in ("user_add", "user_remove", "user_confirm", "user_pending", "user_grants", "user_list"):
            return await self._users(request, op, caller)
        if op == "access_log":
            return local_pb2.LocalResponse(access_log=await h.access_log(request.access_log))
        if op == "case_update":
            return local_pb2.LocalResponse(case_update=await h.case_update(caller, request.case_update))
        if op == "agreement":
            return local_pb2.LocalResponse(agreement=await h.agreement(caller, request.agreement))
        if op == "handover":
            return local_pb2.LocalResponse(alert_move=await h.handover(request.handover))
        if op == "inbox_decide":
            return local_pb2.LocalResponse(inbox_decide=await self._intake.decide(request.inbox_decide))
        if op == "monitor_report":
            return local_pb2.LocalResponse(monitor_report=await self._monitoring.report(request.monitor_report))
        if op == "monitor_list":
            return local_pb2.LocalResponse(monitor_list=await self._monitoring.received())
        if op in ("liaison_query", "disclosure_ask", "disclosure_decide", "directory_verify"):
            return await self._directory(request, op)
        if op == "subject_export":
            return local_pb2.LocalResponse(subject_export=await h.subject_export(caller, request.subject_export))
        return await self._lifecycle(request, op, caller)

    async def _users(self, request: local_pb2.LocalRequest, op: str, caller: Caller) -> local_pb2.LocalResponse:
        h = self._handlers
        if op == "user_list":
            return local_pb2.LocalResponse(user_list=await h.user_list())
        if op == "user_pending":
            return local_pb2.LocalResponse(role_requests=await h.user_pending())
        if op == "user_grants":
            return local_pb2.LocalResponse(user_grants=await h.user_grants())
        try:  # roles change: read them afresh on the next request
            if op == "user_remove":
                return local_pb2.LocalResponse(user_list=await h.user_remove(caller, request.user_remove.user))
            if op == "user_confirm":
                return local_pb2.LocalResponse(user_grant=await h.user_confirm(caller, request.user_confirm))
            return local_pb2.LocalResponse(user_grant=await h.user_request(
                caller, request.user_add.user, self._administrators, self._single_administrator,
                int(self._role_request_ttl_s * 1000)))
        finally:
            self._callers.clear()

    async def _directory(self, request: local_pb2.LocalRequest, op: str) -> local_pb2.LocalResponse:
        h = self._handlers
        if op == "directory_verify":
            return local_pb2.LocalResponse(directory_verify=await h.directory.verify())
        if op == "disclosure_decide":
            outbox_id = await h.disclosures.decide(request.disclosure_decide)
            return local_pb2.LocalResponse(alert_move=await h.outbox_result(outbox_id, False))
        if self._liaison is None:
            raise RequestError("not_a_querier", _("this node's organisation kind does not query the directory"))
        if op == "liaison_query":
            return local_pb2.LocalResponse(liaison_query=await self._liaison.query(request.liaison_query))
        if op == "disclosure_ask":
            ask = request.disclosure_ask
            outbox_id = await self._liaison.ask(ask)
            return local_pb2.LocalResponse(alert_move=await h.outbox_result(outbox_id, ask.no_wait))
        raise RequestError("unknown_request", _("unknown request {op!r}").format(op=op))

    async def _lifecycle(self, request: local_pb2.LocalRequest, op: str, caller: Caller) -> local_pb2.LocalResponse:
        r = self._retention
        if op == "case_close":
            return local_pb2.LocalResponse(case_close=await r.close(request.case_close))
        if op == "retention_extend":
            return local_pb2.LocalResponse(retention_due=await r.extend(caller.uid, request.retention_extend))
        if op == "retention_due":
            return local_pb2.LocalResponse(retention_due=await r.due(request.retention_due))
        if op == "retention_run":
            return local_pb2.LocalResponse(erasure=await r.run(caller.uid))
        if op == "subject_erase":
            return local_pb2.LocalResponse(erasure=await r.erase(caller.uid, request.subject_erase))
        raise RequestError("unknown_request", _("unknown request {op!r}").format(op=op))
