"""A minimal LSP client over stdio for the benchmarks (quill and harper-ls): requests with
timing, notifications, and a reader thread that files responses and publishDiagnostics."""

import json
import os
import queue
import subprocess
import threading
import time


class LspClient:
    def __init__(self, cmd, env=None, stderr=None):
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr if stderr is not None else subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        self.next_id = 0
        self.responses = {}
        self.cond = threading.Condition()
        self.diagnostics = queue.Queue()
        self.notifications = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _send(self, msg):
        body = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self):
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    with self.cond:
                        self.cond.notify_all()
                    return
                line = line.strip()
                if not line:
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            msg = json.loads(out.read(length))
            if "id" in msg and "method" in msg:
                # a request from the server: answer what the benchmarks need
                result = None
                if msg["method"] == "workspace/configuration":
                    result = [self.settings for _ in msg["params"]["items"]]
                self._send({"jsonrpc": "2.0", "id": msg["id"], "result": result})
            elif "id" in msg:
                with self.cond:
                    self.responses[msg["id"]] = msg
                    self.cond.notify_all()
            elif msg.get("method") == "textDocument/publishDiagnostics":
                self.diagnostics.put(msg["params"])
            else:
                self.notifications.append(msg)

    settings = None

    def request_async(self, method, params):
        self.next_id += 1
        self._send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        return self.next_id

    def wait(self, rid, timeout=600):
        deadline = time.time() + timeout
        with self.cond:
            while rid not in self.responses:
                left = deadline - time.time()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"no answer to request {rid} (server exit code {self.proc.poll()})")
                self.cond.wait(left)
            msg = self.responses.pop(rid)
        if "error" in msg:
            raise RuntimeError(f"request {rid} failed: {msg['error']}")
        return msg.get("result")

    def request(self, method, params, timeout=600):
        return self.wait(self.request_async(method, params), timeout)

    def notify(self, method, params):
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def initialize(self, root_uri, options=None, settings=None):
        self.settings = settings
        caps = {
            "general": {"positionEncodings": ["utf-16"]},
            "textDocument": {"publishDiagnostics": {}, "inlineCompletion": {}},
            "workspace": {"configuration": True},
        }
        result = self.request("initialize", {"processId": os.getpid(), "rootUri": root_uri,
                                             "capabilities": caps, "initializationOptions": options})
        self.notify("initialized", {})
        return result

    def close(self):
        try:
            self.request("shutdown", None, timeout=30)
            self.notify("exit", None)
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
            self.proc.wait()
