"""The route table: the handler with every route family's mixin (RoutedHandler), and the routes, found
by path and method. Imported by the main thread right after the listening line (cli.py), or by an
earlier request of a route other than /health (handler.py): the server's start, which only /health
needs, does without the route families' modules."""

from .common import HttpError
from .handler import Handler
from .ports import PortRoutes
from .proxy import ProxyRoutes, proxy_target
from .routes_exec import ExecRoutes
from .routes_fs import FsRoutes
from .routes_list import ListRoutes
from .routes_metrics import MetricsRoutes
from .routes_process import ProcessRoutes
from .routes_process_io import ProcessIoRoutes
from .routes_read import ReadRoutes
from .routes_write import WriteMethods, WriteRoutes


class RoutedHandler(
    ExecRoutes,
    ReadRoutes,
    WriteRoutes,
    WriteMethods,
    ListRoutes,
    FsRoutes,
    ProcessRoutes,
    ProcessIoRoutes,
    MetricsRoutes,
    ProxyRoutes,
    PortRoutes,
    Handler,
):
    """Handler with the routes: the mixins' methods, found through ROUTES and PROCESS_ROUTES below."""


def find_route(method, route, query):
    """(methods, args) of a dedicated route; 404 when there is none."""
    methods = ROUTES.get(route)
    args = ()
    if methods is None and route.startswith("/v1/processes/"):
        methods, args = process_route(route)
    if methods is None and route.startswith("/v1/proxy/"):
        methods, args = {method: RoutedHandler.route_proxy}, proxy_target(route) + (query,)
    if methods is None and route.startswith("/v1/ports/"):
        methods, args = port_route(route)
    if methods is None:
        raise HttpError(404, "no route: %s %s" % (method, route), "not_found")
    return methods, args


ROUTES = {
    "/v1/exec": {"POST": RoutedHandler.route_exec},
    "/v1/files/read": {"GET": RoutedHandler.route_read},
    "/v1/files/write": {"PUT": RoutedHandler.route_write},
    "/v1/files/commit": {"POST": RoutedHandler.route_commit},
    "/v1/files/abort": {"POST": RoutedHandler.route_abort},
    "/v1/files/stat": {"GET": RoutedHandler.route_stat},
    "/v1/files/list": {"GET": RoutedHandler.route_list},
    "/v1/files/delete": {"DELETE": RoutedHandler.route_delete},
    "/v1/files/mkdir": {"POST": RoutedHandler.route_mkdir},
    "/v1/files/rename": {"POST": RoutedHandler.route_rename},
    "/v1/files/chmod": {"POST": RoutedHandler.route_chmod},
    "/v1/files/symlink": {"POST": RoutedHandler.route_symlink},
    "/v1/processes": {
        "GET": RoutedHandler.route_process_list,
        "POST": RoutedHandler.route_process_start,
        "DELETE": RoutedHandler.route_process_cancel,
    },
    "/v1/shutdown": {"POST": RoutedHandler.route_shutdown},
    "/v1/metrics": {"GET": RoutedHandler.route_metrics, "POST": RoutedHandler.route_metrics},
    "/health": {"GET": RoutedHandler.health},
    "/exec": {"POST": RoutedHandler.route_legacy_exec},
    "/write": {"POST": RoutedHandler.route_legacy_write},
    "/read": {"POST": RoutedHandler.route_legacy_read},
}


# The streaming and long-poll routes answer POST too, with the same query string: a
# Cloudflare quick tunnel holds a GET response's body until it ends (cloudflared#1449)
# but lets a POST's stream through live. GET stays for clients written for HF's server.
PROCESS_ROUTES = {
    "": {"GET": RoutedHandler.route_process_get, "DELETE": RoutedHandler.route_process_kill},
    "/output": {"GET": RoutedHandler.route_process_output, "POST": RoutedHandler.route_process_output},
    "/wait": {"GET": RoutedHandler.route_process_wait, "POST": RoutedHandler.route_process_wait},
    "/stdin": {"POST": RoutedHandler.route_process_stdin},
    "/ack": {"POST": RoutedHandler.route_process_ack},
}


def keyed_route(route, prefix, table):
    """{prefix}{key}[/{rest}] -> (table["/rest" or ""], (key,)), or (None, ())."""
    key, _, rest = route[len(prefix) :].partition("/")
    methods = table.get("/" + rest if rest else "")
    if not key or methods is None:
        return None, ()
    return methods, (key,)


def process_route(route):
    """/v1/processes/{id}[/output|/wait] -> (methods, (id,)), or (None, ())."""
    return keyed_route(route, "/v1/processes/", PROCESS_ROUTES)


PORT_ROUTES = {
    "": {"GET": RoutedHandler.route_port},
    "/tunnel": {"GET": RoutedHandler.route_port_tunnel_get, "POST": RoutedHandler.route_port_tunnel},
}


def port_route(route):
    """/v1/ports/{port}[/tunnel] -> (methods, (port text,)), or (None, ())."""
    return keyed_route(route, "/v1/ports/", PORT_ROUTES)
