"""hf-sandbox's in-sandbox RPC server, a stdlib-only package; run it with `python3 -S <this directory>`
(see __main__.py and rpc-server/README.md)."""
