#!/usr/bin/env python3
"""Checks editors/helix/languages.toml against the quill server, speaking LSP as Helix does.

Helix is not packaged for Debian 12, so this plays Helix's part at the protocol level (standard
library only): the `config` table goes out as initializationOptions and again in
workspace/didChangeConfiguration {"settings": config}; a workspace/configuration pull is
answered by looking the section up inside `config` (null for "quill", as Helix does);
`language-id` of a language is the languageId sent; code actions run their command with
workspace/executeCommand and apply the server's workspace/applyEdit.

The model paths and sampling of `config` are replaced with the tiny fixtures (greedy).
Prints "all helix checks passed" when every check passed; exits 1 otherwise.
"""
import json
import os
import subprocess
import sys
import threading
import time
import tomllib
import queue

REPO = os.environ["QUILL_REPO"]
BIN = os.environ["QUILL_BIN"]
HARBOUR = ("The harbour town woke early. Before the sun was up, the bakers had lit their ovens, "
           "the fishermen were loading nets onto their boats, and the first bus of the day was "
           "waiting outside the station with its engine running.")
HARBOUR_SUMMARY = "pe plan pelow A pe fre balq whe pe Daqp hotel house bal home cha hotel"
CAFE = "We sat in the café and ordered coffee. It was good."
PROMPT = "The quick brown fox"

T0 = time.time()


def log(msg):
    print(f"{time.time() - T0:5.1f}s {msg}", flush=True)


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


with open(os.path.join(REPO, "editors/helix/languages.toml"), "rb") as f:
    TOML = tomllib.load(f)
SERVER = TOML["language-server"]["quill"]
CONFIG = json.loads(json.dumps(SERVER["config"]))
CONFIG["model"] = os.path.join(REPO, "tests/fixtures/gpt2-tiny")
CONFIG["t5Model"] = os.path.join(REPO, "tests/fixtures/t5-tiny")
CONFIG["completion"].update(temperature=0, numSuggestions=1, maxTokens=8, stopAtSentence=False)
CONFIG["diagnostics"].update(minTokenLogprob=-25, minAlternativeGap=8,
                             maxSentencePerplexity=1e12, debounceMs=50)
CONFIG["t5"]["maxTokens"] = 20
LANGS = {lang["name"]: lang for lang in TOML["language"]}


def language_id(name):
    return LANGS[name].get("language-id", name)


class Client:
    def __init__(self):
        env = dict(os.environ, HF_HUB_OFFLINE="1", **SERVER.get("environment", {}))
        self.proc = subprocess.Popen([BIN, *SERVER.get("args", [])], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.next_id = 0
        self.responses = {}
        self.notifications = queue.Queue()
        self.lock = threading.Condition()
        self.errors = []
        self.applied = []
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _send(self, msg):
        body = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self):
        out = self.proc.stdout
        while True:
            headers = {}
            while True:
                line = out.readline()
                if not line:
                    return
                line = line.strip()
                if not line:
                    break
                k, v = line.split(b":", 1)
                headers[k.strip().lower()] = v.strip()
            msg = json.loads(out.read(int(headers[b"content-length"])))
            if "method" in msg and "id" in msg:
                self._serve(msg)
            elif "method" in msg:
                if msg["method"] == "window/showMessage" and msg["params"]["type"] == 1:
                    self.errors.append(msg["params"]["message"])
                self.notifications.put(msg)
            else:
                with self.lock:
                    self.responses[msg["id"]] = msg
                    self.lock.notify_all()

    def _serve(self, msg):
        """Requests from the server, answered as Helix answers them."""
        method, params = msg["method"], msg.get("params") or {}
        result = None
        if method == "workspace/configuration":
            result = []
            for item in params.get("items", []):
                value = CONFIG
                for part in (item.get("section") or "").split("."):
                    if part:
                        value = value.get(part) if isinstance(value, dict) else None
                result.append(value)
        elif method == "workspace/applyEdit":
            self.applied.append(params["edit"])
            result = {"applied": True}
        self._send({"jsonrpc": "2.0", "id": msg["id"], "result": result})

    def request(self, method, params, timeout=60):
        self.next_id += 1
        rid = self.next_id
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        deadline = time.time() + timeout
        with self.lock:
            while rid not in self.responses:
                left = deadline - time.time()
                check(left > 0, f"no answer to {method} in {timeout}s")
                self.lock.wait(left)
            msg = self.responses.pop(rid)
        check("error" not in msg, f"{method} failed: {msg.get('error')}")
        return msg["result"]

    def notify(self, method, params):
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def wait_notification(self, pred, what, timeout=60):
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            check(left > 0, f"timed out waiting for {what}")
            try:
                msg = self.notifications.get(timeout=left)
            except queue.Empty:
                continue
            if pred(msg):
                return msg


def cli_complete(prompt):
    out = subprocess.run([BIN, "complete", "--model", CONFIG["model"], "--max-tokens", "8",
                          "--json", prompt], capture_output=True, text=True, check=True,
                         env=dict(os.environ, HF_HUB_OFFLINE="1"))
    return json.loads(out.stdout)["completions"][0]["text"]


def main():
    c = Client()
    version = {}

    def open_doc(name, lang, text):
        uri = "file:///tmp/quill-helix-test/" + name
        version[uri] = 1
        c.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": language_id(lang), "version": 1, "text": text}})
        return uri

    tests = []

    def test(name):
        def deco(fn):
            tests.append((name, fn))
            return fn
        return deco

    @test("initialize with config as initializationOptions; didChangeConfiguration keeps it")
    def _():
        res = c.request("initialize", {
            "processId": os.getpid(), "rootUri": None, "initializationOptions": CONFIG,
            "capabilities": {
                "workspace": {"configuration": True, "applyEdit": True,
                              "didChangeConfiguration": {"dynamicRegistration": False}},
                "window": {"workDoneProgress": True},
                "general": {"positionEncodings": ["utf-8", "utf-32", "utf-16"]},
                "textDocument": {"codeAction": {"codeActionLiteralSupport": {
                    "codeActionKind": {"valueSet": ["", "quickfix", "refactor"]}}}},
            }})
        check(res["serverInfo"]["name"] == "quill", f"serverInfo {res.get('serverInfo')}")
        c.notify("initialized", {})
        c.notify("workspace/didChangeConfiguration", {"settings": CONFIG})
        c.wait_notification(lambda m: m["method"] == "$/progress"
                            and m["params"]["value"].get("kind") == "end"
                            and "ready" in (m["params"]["value"].get("message") or ""),
                            "the model to load")
        time.sleep(0.3)
        check(not c.errors, f"the server reported errors: {c.errors}")

    @test("a .txt buffer (language-id plaintext) gets unlikely-token diagnostics")
    def _():
        uri = open_doc("cafe.txt", "text", CAFE + "\n")
        msg = c.wait_notification(
            lambda m: m["method"] == "textDocument/publishDiagnostics"
            and m["params"]["uri"] == uri and m["params"]["diagnostics"], "diagnostics")
        diags = msg["params"]["diagnostics"]
        check(all(d["source"] == "quill" for d in diags), "source")
        check(any(d.get("code") == "unlikely-token" for d in diags), "no unlikely-token")
        d = diags[0]
        acts = c.request("textDocument/codeAction", {
            "textDocument": {"uri": uri}, "range": d["range"],
            "context": {"diagnostics": [d]}})
        titles = [a["title"] for a in acts]
        check(any(t.startswith("Replace with '") for t in titles), f"quick fixes: {titles}")
        log(f"     {len(diags)} diagnostics; fixes for the first: {titles}")

    @test("completion continues the text (= quill complete)")
    def _():
        uri = open_doc("ghost.md", "markdown", PROMPT)
        want = "fox" + cli_complete(PROMPT)
        res = c.request("textDocument/completion", {
            "textDocument": {"uri": uri}, "position": {"line": 0, "character": len(PROMPT)}})
        items = res["items"] if isinstance(res, dict) else res
        edits = [i.get("textEdit", {}).get("newText") for i in items]
        check(want in edits, f"completion items {edits} lack {want!r}")

    @test("Space a on a selection: 'Insert summary below selection' edits the buffer")
    def _():
        text = "Morning\n\n" + HARBOUR + "\n"
        uri = open_doc("harbour.md", "markdown", text)
        sel = {"start": {"line": 2, "character": 0}, "end": {"line": 2, "character": len(HARBOUR)}}
        acts = c.request("textDocument/codeAction", {
            "textDocument": {"uri": uri}, "range": sel, "context": {"diagnostics": []}})
        titles = [a["title"] for a in acts]
        for t in ("Insert summary below selection", "Replace selection with its German translation"):
            check(t in titles, f"code actions {titles} lack {t!r}")
        act = next(a for a in acts if a["title"] == "Insert summary below selection")
        cmd = act["command"]
        c.request("workspace/executeCommand", {"command": cmd["command"],
                                               "arguments": cmd.get("arguments", [])})
        check(len(c.applied) == 1, f"workspace/applyEdit requests: {c.applied}")
        edits = c.applied[0].get("changes", {}).get(uri) or [
            e for dc in c.applied[0].get("documentChanges", []) for e in dc["edits"]]
        check([e["newText"] for e in edits] == ["\n\n" + HARBOUR_SUMMARY],
              f"the edit: {edits}")

    failed = False
    for name, fn in tests:
        try:
            fn()
            log(f"ok   {name}")
        except Exception as e:  # noqa: BLE001
            failed = True
            log(f"FAIL {name}")
            log(f"     {type(e).__name__}: {e}")
            break
    try:
        c.request("shutdown", None, timeout=10)
        c.notify("exit", None)
        # Helix then drops the process (kill_on_drop); closing stdin is the gentle version.
        c.proc.stdin.close()
        c.proc.wait(timeout=10)
        check(c.proc.returncode == 0, f"exit code {c.proc.returncode} after shutdown, exit")
    except Exception as e:  # noqa: BLE001
        failed = True
        log(f"FAIL shutdown: {type(e).__name__}: {e}")
        c.proc.kill()
    if failed:
        sys.stderr.write("".join(x.decode(errors="replace") for x in c.stderr[-30:]))
        log("helix checks FAILED")
        sys.exit(1)
    log("all helix checks passed")


if __name__ == "__main__":
    main()
