#!/usr/bin/env bash
# HF's own Python client (huggingface_hub's Sandbox, _SandboxServer) driving our server in host mode,
# offline, on this machine: the interop check of issue 15 ("HF's client can use ours").
#
# Needs a huggingface_hub source tree with its Python dependencies (httpx, filelock, fsspec, yaml, tqdm,
# packaging, typing_extensions), e.g. on Debian:
#   apt-get install python3-httpx python3-filelock python3-fsspec python3-yaml python3-tqdm \
#     python3-packaging python3-typing-extensions
#   git clone https://github.com/huggingface/huggingface_hub /tmp/hfhub
#   HF_HUB_SRC=/tmp/hfhub/src HF_PYTHON=/usr/bin/python3 bash bench/experiments/hf-client-host.sh
# Results of a run: hf-client-host.results.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${HF_HUB_SRC:?set HF_HUB_SRC to the src directory of a huggingface_hub checkout}"
HF_PYTHON="${HF_PYTHON:-python3}"
work=$(mktemp -d)
token=$(python3 -c "import secrets; print(secrets.token_hex(32))")
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
# The host token may act on sandboxes (SBX_HOST_TOKEN_ACTS=1): HF's client sends it on every route.
# Not root: add SBX_HOST_WEAK_ISOLATION=1.
SBX_TOKEN=$token SBX_HOST_MODE=1 SBX_HOST_TOKEN_ACTS=1 SBX_HOMES_DIR="$work/homes" \
  python3 -S rpc-server/sbx_server --port "$port" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.05; done
echo "health: $(curl -s "http://127.0.0.1:$port/health")"
TOKEN=$token PORT=$port PYTHONPATH="$HF_HUB_SRC" HF_HUB_OFFLINE=1 "$HF_PYTHON" - <<'PY'
import os
import huggingface_hub
from huggingface_hub import HfApi
from huggingface_hub._sandbox import Sandbox, _SandboxServer

print("huggingface_hub", huggingface_hub.__version__)
# What _connect_host builds from a job, built by hand: the base URL and the host's sandbox token.
server = _SandboxServer(job_id="host", owner="me", image=None, base_url="http://127.0.0.1:%s" % os.environ["PORT"],
                        nonce="n", sandbox_token=os.environ["TOKEN"], api=HfApi(token="hf_offline"), capacity=50)
made = server.request("POST", "/v1/sandboxes", json={"count": 2, "env": {"GREETING": "hello"}}).json()
print("created:", [(s["id"], s["uid"]) for s in made["sandboxes"]], "rejected:", made["rejected"])
first = made["sandboxes"][0]["id"]
sb = Sandbox(id="host." + first, server=server, local_id=first, owns_sandbox=True, owns_server=False)
r = sb.run("echo $GREETING from uid $(id -u) in $PWD")
print("run:", r.exit_code, r.stdout.strip())
sb.files.write("/notes/x.txt", b"data")
print("read back:", sb.files.read("/notes/x.txt"), [e.name for e in sb.files.list("/notes")])
sb.run("sleep 30", background=True)
print("processes:", [(p.pid, p.running) for p in sb.processes()])
print("listed:", sorted(s["id"] for s in server.request("GET", "/v1/sandboxes").json()))
sb.kill()
print("after kill:", sorted(s["id"] for s in server.request("GET", "/v1/sandboxes").json()))
PY
