"""Routes: /v1/processes (start, list, get, cancel, kill, wait) and POST /v1/shutdown."""

import json
import selectors
import time

from .background import BGPROCS, DEFAULT_BUFFER_BYTES, FOLLOW_POLL
from .common import PROCESS_LIMITS, SCOPE, ClientGone, HttpError, bad_request, dumps, log, new_selector, request_shutdown
from .execution import parse_exec, peer_closed
from .launch import KEYED, buffer_bytes, checked_idempotency_key, parse_signal, scoped_key, start_keyed
from .proctree import kill_family
from .sinks import exit_event


class ProcessRoutes(object):
    """A mixin of RoutedHandler (see routes.py)."""

    # ---- background processes ----

    def route_process_start(self):
        req = self.read_json()
        spec = parse_exec(req, legacy=False)
        tag = req.get("tag")
        if tag is not None and not isinstance(tag, str):
            raise bad_request("`tag` must be a string")
        bg, existing = start_keyed(req, spec, "process", tag, buffer_bytes(req, DEFAULT_BUFFER_BYTES))
        if existing:
            info = bg.info()
            info["existing"] = True
            return self.respond_json(info)
        log("command pid %d is background process %s%s" % (bg.pid, bg.id, "" if tag is None else " " + json.dumps(tag[:100])))
        info = bg.info()
        self.respond_json({k: info[k] for k in ("id", "pid", "cmd", "tag", "started_at_ms")})

    def route_shutdown(self):
        """Ends the server and everything it started (whole process groups), so
        that a job running it exits and stops billing without any Hub request.
        Answers 202 first: the shutdown itself runs on the main thread."""
        self.close_connection = True
        self.respond(202, dumps({"shutting_down": True}))
        request_shutdown("shutdown requested (POST /v1/shutdown)")

    def route_process_list(self):
        kind = self.param("kind", required=False) or "process"
        if kind not in ("process", "exec", "all"):
            raise bad_request("query parameter `kind` must be process, exec or all, got %r" % kind)
        sandbox = SCOPE.sandbox  # host mode: only that sandbox's
        listed = [bg for bg in BGPROCS.all() if bg.spec.sandbox is sandbox]
        self.respond_json([bg.info() for bg in listed if kind == "all" or bg.kind == kind])

    def route_process_get(self, key):
        self.respond_json(BGPROCS.find(key).info())

    def route_process_cancel(self):
        """Kills the command a request with this idempotency key started, and refuses any such
        request that arrives later: a client interrupted before its exec or spawn answered cannot
        know the command's id, and its request may still be on its way."""
        key = scoped_key(checked_idempotency_key(self.param("idempotency_key")))
        sig = parse_signal(self.param("signal", required=False))
        with KEYED:  # a keyed request is either fully registered or not yet checked
            bg = BGPROCS.cancel(key, PROCESS_LIMITS.exec_retain)
        if bg is None or bg.spec.sandbox is not SCOPE.sandbox:
            return self.respond_json({"id": None, "killed": False})
        self.kill_record(bg, sig)

    def route_process_kill(self, key):
        self.kill_record(BGPROCS.find(key), parse_signal(self.param("signal", required=False)))

    def kill_record(self, bg, sig):
        with bg.cond:
            # The leader is unreaped until returncode is set (pump holds it),
            # so its pid -- the group id -- cannot have been recycled.
            running = bg.proc.returncode is None and bg.result is None
        # Everything it started goes too, wherever it moved, even after the
        # leader ended (a daemon it left); with KILL, answered once all are gone.
        signalled = kill_family(bg.pid if running else None, bg.spec.marker, sig)
        self.respond_json({"id": bg.id, "killed": running or signalled})

    def client_still_there(self):
        """Raise ClientGone if the client hung up. The socket has a timeout,
        so recv would wait for data whatever its flags: poll it first."""
        sel = new_selector()
        try:
            sel.register(self.connection, selectors.EVENT_READ)
            readable = bool(sel.select(0))
        finally:
            sel.close()
        if readable and peer_closed(self.connection):
            raise ClientGone()

    def route_process_wait(self, key):
        """GET|POST /v1/processes/{id}/wait?timeout=SECONDS."""
        bg = BGPROCS.find(key)
        timeout = self.seconds_param("timeout")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with bg.cond:
                if bg.result is None:
                    wait = FOLLOW_POLL
                    if deadline is not None:
                        wait = min(wait, max(0.0, deadline - time.monotonic()))
                    if wait > 0:
                        bg.cond.wait(wait)
                result = bg.result
            if result is not None:
                out = exit_event(result)
                del out["event"]
                return self.respond_json(out)
            if deadline is not None and time.monotonic() >= deadline:
                raise HttpError(408, "process %s still running after %s s" % (bg.id, self.param("timeout")), "timeout")
            self.client_still_there()
