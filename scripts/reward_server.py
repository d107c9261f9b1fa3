#!/usr/bin/env python3
"""Serves a TRL-style reward function to swift-rlhf as an external reward (rewards.external).

    def reward(prompts, completions, **kwargs) -> list[float]

kwargs are the dataset's columns for each completion (answer, task and any other field of the
prompts file), as TRL's GRPOTrainer passes them to reward_funcs. Standard library only.

    # rewards.external_command: one JSON request line per batch on stdin, one reply line on stdout
    python3 scripts/reward_server.py my_rewards.py:reward
    # rewards.external_url: http://HOST:PORT/ (OpenRLHF's remote reward model request and reply)
    python3 scripts/reward_server.py my_rewards.py:reward --port 5000 [--host 0.0.0.0]

The reply is {"rewards": [...]}; when the function raises, {"error": "<traceback>"}, which the
trainer reports with the batch it was asked. Anything the function prints goes to stderr, so it
cannot corrupt the replies on stdout.
"""
import argparse
import contextlib
import http.server
import importlib.util
import json
import math
import os
import sys
import threading
import traceback

# Keys of the request that are not dataset columns (docs/architecture.md §5).
PROTOCOL_KEYS = {"batch", "iteration", "query", "labels"}
# One call at a time: the ranks' requests may arrive together, and the function need not be thread-safe.
CALL = threading.Lock()


def load(spec):
    """The function named by 'file.py:name' (name defaults to 'reward')."""
    path, _, name = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("user_rewards", path)
    if module_spec is None:
        sys.exit(f"reward_server: cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    function = getattr(module, name or "reward", None)
    if not callable(function):
        sys.exit(f"reward_server: {path} has no function '{name or 'reward'}'")
    return function


def answer(function, request):
    """The reply object for one request object."""
    try:
        columns = {k: v for k, v in request.items() if k not in PROTOCOL_KEYS | {"prompts", "completions"}}
        with CALL, contextlib.redirect_stdout(sys.stderr):
            rewards = function(prompts=request["prompts"], completions=request["completions"], **columns)
        rewards = [float(r) for r in rewards]
        if len(rewards) != len(request["completions"]):
            raise ValueError(f"{len(rewards)} rewards for {len(request['completions'])} completions")
        if not all(math.isfinite(r) for r in rewards):
            raise ValueError(f"a reward is not finite: {rewards}")
        return {"rewards": rewards}
    except Exception:
        return {"error": traceback.format_exc()}


def serve_lines(function):
    # Replies on a copy of fd 1; fd 1 itself goes to stderr, so that what C extensions or child
    # processes print cannot corrupt the replies.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = answer(function, json.loads(line))
        except json.JSONDecodeError:
            reply = {"error": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def serve_http(function, host, port):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                reply = answer(function, json.loads(body))
            except json.JSONDecodeError:
                reply = {"error": traceback.format_exc()}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):
            sys.stderr.write("reward_server: " + format % args + "\n")

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    sys.stderr.write(f"reward_server: listening on http://{host}:{server.server_port}/\n")
    server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("function", help="file.py:name of reward(prompts, completions, **kwargs)")
    parser.add_argument("--port", type=int, help="serve HTTP on this port instead of stdin/stdout")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (with --port)")
    args = parser.parse_args()
    function = load(args.function)
    if args.port is None:
        serve_lines(function)
    else:
        serve_http(function, args.host, args.port)


if __name__ == "__main__":
    main()
