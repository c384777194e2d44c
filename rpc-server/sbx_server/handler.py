"""The request handler: dispatch (authorization, then the route table) and /health. The routes are the
methods of RoutedHandler (routes.py), which a connection's handler becomes at its first request of
another route: the start does not import the route families' modules."""

import time

from .common import (
    AUTH_ERROR,
    ClientGone,
    HttpError,
    LEGACY_ROUTES,
    PROTOCOL,
    STATE,
    VERSION,
    bearer,
    dumps,
    format_exc,
    is_sandbox_token,
    log,
    note_foreign_authorization,
    shown,
)
from .handler_base import BaseHandler, RequestMixin
from .httpframe import parse_query


class Handler(RequestMixin, BaseHandler):
    """One connection. Every request comes to dispatch(); the routes are RoutedHandler's methods."""

    def dispatch(self):
        """Every method comes here (not to do_*), so a wrong method on a known
        path gets a JSON 405 rather than http.server's HTML 501."""
        method = self.command
        if method == "HEAD":
            # We would answer with a body, which a HEAD client does not read:
            # never reuse the connection after it.
            self.close_connection = True
        if self.path.startswith("/"):
            # Origin form, split by hand: urlsplit would read "//x/exec" as
            # host "x" plus path "/exec" and route it somewhere unintended.
            route, _, query = self.path.partition("?")
            route = route.partition("#")[0]
        else:  # absolute form (proxies): http://host/path?query
            from urllib.parse import urlsplit  # at first use: only a proxy's request brings it

            try:
                split = urlsplit(self.path)
            except ValueError:  # `http://[::1/x`: an unclosed IPv6 literal is no URL
                return self.send_error(400, "malformed request target (not a path, not a URL)")
            route, query = split.path or "/", split.query
        try:
            self.query = parse_query(query)
            self._body = self.open_body()
            if route == "/health" and method == "GET":
                self.health()
            else:
                sandbox = None
                if STATE.host is not None:
                    from .routes_host import route as host_route  # host mode only

                    methods, args, sandbox = host_route(self, method, route, query)
                else:
                    if not self.authorized():
                        # Its body is still read, to keep the connection in sync, but within the head's
                        # deadline: a peer without the token gets no more of our time than that.
                        self.reader.untrusted_body()
                        raise HttpError(403, AUTH_ERROR, "auth")
                    self.trusted = True
                    methods, args = find_route(method, route, query)
                fn = methods.get(method)
                if fn is None:
                    allow = ", ".join(sorted(methods))
                    message = "method %s not allowed on %s (use %s)" % (method, route, allow)
                    raise HttpError(405, message, "method_not_allowed", [("Allow", allow)])
                self.with_routes()
                STATE.begin()
                try:
                    if sandbox is None:
                        fn(self, *args)
                    else:
                        from .routes_host import run

                        run(self, sandbox, fn, args)
                finally:
                    STATE.end()
        except HttpError as e:
            if self._started:
                self.close_connection = True
                return
            if e.close:
                self.close_connection = True
                self._linger = True
            else:
                self.discard_body()  # before answering, so the client is not reset mid-upload
            body = {"error": e.message, "code": e.code}
            if route in LEGACY_ROUTES and e.code != "auth":
                body = {"detail": e.message, "error": e.message, "code": e.code}  # FastAPI-style too
            self.respond(e.status, dumps(body), headers=e.headers)
            return
        except ClientGone:
            raise
        except Exception as e:
            log("internal error on %s %s:\n%s" % (method, shown(route), format_exc()))
            if self._started:
                self.close_connection = True
                return
            self.close_connection = True
            self._linger = True
            self.respond(500, dumps({"error": "internal server error: %s" % e, "code": "internal"}))
            return
        self.discard_body()

    def with_routes(self):
        """Makes this connection's handler a RoutedHandler: the routes are its methods and call one another
        through self. A connection's handler is made as it opens, before a request says what it needs, so
        it changes class at its first routed request (RoutedHandler only adds methods to Handler); the
        connections opened later are RoutedHandlers from the start (they skip the import statement)."""
        if type(self) is Handler:
            from .routes import RoutedHandler

            self.__class__ = RoutedHandler
            self.server.RequestHandlerClass = RoutedHandler

    # ---- auth ----

    def authorized(self):
        if STATE.token_digest is None:
            return True
        x = self.headers.get("X-Sandbox-Token")
        x_ok = x is not None and is_sandbox_token(x.strip())
        b = bearer(self.headers.get("Authorization"))
        b_ok = b is not None and is_sandbox_token(b)
        if x_ok and b is not None and not b_ok:
            note_foreign_authorization()
        return x_ok or b_ok

    # ---- routes ----

    def health(self):
        if STATE.host is not None:
            from .routes_host import health_fields

            return self.host_health(health_fields())
        # Unauthenticated callers learn only that the server is up (no version).
        if self.authorized():
            self.trusted = True
            STATE.touch()
            self.respond_json(
                {
                    "status": "ok",
                    "version": VERSION,
                    "protocol": PROTOCOL,
                    "uptime_ms": int((time.monotonic() - STATE.started) * 1000),
                    "mode": "dedicated",
                    "auth": STATE.token_digest is not None,
                }
            )
        else:
            self.respond(200, b'{"status":"ok"}')

    def host_health(self, fields):
        """Host mode: the pool's client reads the host's capacity and load unauthenticated (HF's server
        answers its count so); the version and uptime only with the host token."""
        out = {"status": "ok"}
        if self.authorized():
            self.trusted = True
            out.update(version=VERSION, protocol=PROTOCOL, uptime_ms=int((time.monotonic() - STATE.started) * 1000))
            out["auth"] = True
        out.update(fields)
        self.respond_json(out)


def find_route(method, route, query):
    """(methods, args) of a dedicated route (routes.py, imported at the first request that needs it);
    404 when there is none."""
    from .routes import find_route as find

    return find(method, route, query)
