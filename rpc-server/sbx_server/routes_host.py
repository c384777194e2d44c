"""Host mode's routing: /v1/sandboxes (create, list, delete; the host token) and every dedicated /v1/<rest>
route scoped as /v1/sandboxes/{id}/<rest> (that sandbox's token), run with the request's thread acting
for the sandbox (common.SCOPE; isolation.enter). Imported only in host mode."""

import math

from .common import AUTH_ERROR, SCOPE, STATE, HttpError, bad_request, bearer, log
from .host import DEFAULT_MAX_MEM_MB, DEFAULT_MAX_PROCS, MAX_COUNT, sandbox_token, token_digest
from .digest import compare_digest

PREFIX = "/v1/sandboxes/"
HOST_ROUTES = ("/v1/shutdown",)  # dedicated routes that stay the host's, with the host token


def credentials(handler):
    """The tokens a request carries: X-Sandbox-Token, and Authorization: Bearer."""
    out = []
    x = handler.headers.get("X-Sandbox-Token")
    if x is not None:
        out.append(x.strip())
    b = bearer(handler.headers.get("Authorization"))
    if b is not None:
        out.append(b)
    return out


def matches(digests, want):
    return any(compare_digest(d, want) for d in digests)


def refuse(handler, status=403):
    handler.reader.untrusted_body()  # see Handler.dispatch: no more of our time than the head's
    raise HttpError(status, AUTH_ERROR, "auth")


def route(handler, method, route_path, query):
    """(methods, args, sandbox) of a request in host mode; raises HttpError (404, 401/403)."""
    from .routes import find_route

    host = STATE.host
    if route_path == "/v1/sandboxes" or route_path in HOST_ROUTES:
        if not handler.authorized():
            refuse(handler)
        handler.trusted = True
        if route_path in HOST_ROUTES:
            return find_route(method, route_path, query) + (None,)
        return SANDBOXES, (), None
    if not route_path.startswith(PREFIX):
        if not handler.authorized():
            refuse(handler)
        if route_path.startswith("/v1/"):
            message = "no route: %s %s (a host has no sandbox of its own: use /v1/sandboxes/{id}%s)"
            raise HttpError(404, message % (method, route_path, route_path[3:]), "not_found")
        raise HttpError(404, "no route: %s %s" % (method, route_path), "not_found")
    sandbox_id, _, rest = route_path[len(PREFIX) :].partition("/")
    sandbox = host.get(sandbox_id)
    given = [token_digest(t) for t in credentials(handler)]
    # A deleted sandbox's own token still learns that it is gone (404, not 401).
    want = sandbox.token_digest if sandbox is not None else token_digest(sandbox_token(host.token, sandbox_id))
    host_acts = host.token_acts or (not rest and method == "DELETE")  # the host deletes any of its sandboxes
    # The host token is Handler.authorized's check, the one every route of the host's uses; it is made only
    # where the host may act and the sandbox's own token was not given.
    if not (matches(given, want) or (host_acts and handler.authorized())):
        # Another sandbox's token, or the host's (without SBX_HOST_TOKEN_ACTS): not this sandbox's.
        refuse(handler, 401)
    handler.trusted = True
    if sandbox is None:
        raise HttpError(404, "no such sandbox: %s" % sandbox_id, "not_found")
    if not rest:
        return {"DELETE": delete_one}, (sandbox_id,), None
    scoped = "/v1/" + rest
    if scoped in HOST_ROUTES or scoped.startswith("/v1/sandboxes"):
        raise HttpError(404, "no route: %s %s" % (method, route_path), "not_found")
    methods, args = find_route(method, scoped, query)
    if args and scoped.startswith("/v1/processes/"):
        from .background import BGPROCS

        if BGPROCS.find(args[0]).spec.sandbox is not sandbox:  # ids are the host's: others' are not found
            raise HttpError(404, "no such process: %s" % args[0], "not_found")
    return methods, args, sandbox


def run(handler, sandbox, fn, args):
    """A route, acting for `sandbox`: its home, its environment, its uid for file accesses."""
    host = STATE.host
    host.busy(sandbox, 1)
    SCOPE.sandbox = sandbox
    host.isolation.enter(sandbox)
    try:
        if sandbox.deleted:
            raise HttpError(404, "no such sandbox: %s (deleted)" % sandbox.id, "not_found")
        fn(handler, *args)
    finally:
        host.isolation.leave()
        SCOPE.sandbox = None
        host.busy(sandbox, -1)


# ---- /v1/sandboxes ----


def positive_int(req, name, default):
    value = req.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request("`%s` must be an integer of at least 1, got %r" % (name, value))
    return value


def parse_create(req):
    count = positive_int(req, "count", 1)
    if count > MAX_COUNT:
        raise bad_request("`count` must be at most %d, got %d" % (MAX_COUNT, count))
    env = req.get("env") or {}
    if not isinstance(env, dict):
        raise bad_request("`env` must be an object of string values")
    for k, v in env.items():
        if not isinstance(v, str) or not k or "=" in k or "\0" in k or "\0" in v:
            raise bad_request("`env`: invalid variable %r (names without = or NUL, string values)" % k)
    idle = req.get("idle_timeout_secs")
    if idle is None:
        idle = 0.0
    if isinstance(idle, bool) or not isinstance(idle, (int, float)) or not (idle >= 0 and math.isfinite(idle)):
        raise bad_request("`idle_timeout_secs` must be a number of seconds >= 0 (0: never), got %r" % (idle,))
    max_procs = positive_int(req, "max_procs", DEFAULT_MAX_PROCS)
    max_mem_mb = positive_int(req, "max_mem_mb", DEFAULT_MAX_MEM_MB)
    return count, env, float(idle), max_procs, max_mem_mb


def create(handler):
    req = handler.read_json() if handler._body.chunked or handler._body.remaining else {}
    count, env, idle, max_procs, max_mem_mb = parse_create(req)
    host = STATE.host
    made = []
    for sandbox in host.create(count, env, idle, max_procs, max_mem_mb):
        info = sandbox.info()
        info["token"] = sandbox_token(host.token, sandbox.id)
        made.append(info)
    if made:
        log("created %d sandbox(es): %s" % (len(made), " ".join(s["id"] for s in made)))
    handler.respond_json({"sandboxes": made, "rejected": count - len(made)})


def list_all(handler):
    handler.respond_json([s.info() for s in STATE.host.all()])


def delete_all(handler):
    handler.respond_json({"deleted": STATE.host.delete_all()})


def delete_one(handler, sandbox_id):
    if not STATE.host.delete(sandbox_id):
        raise HttpError(404, "no such sandbox: %s" % sandbox_id, "not_found")
    handler.respond_json({"id": sandbox_id, "deleted": True})


SANDBOXES = {"POST": create, "GET": list_all, "DELETE": delete_all}


def health_fields():
    host = STATE.host
    return {"mode": "host", "capacity": host.capacity, "sandboxes": host.count(), "isolation": host.isolation.name}
