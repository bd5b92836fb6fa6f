"""Load generator for the webhook benchmark; runs in its own process, never in the server's.

    python bench/loadgen.py closed PLAN.json --url URL --concurrency 50 --duration 20
    python bench/loadgen.py open   PLAN.json --url URL --rate 100 --chats 100 --duration 30

PLAN.json holds chats: `{"chats": [{"kind": "knowledge", "turns": [{"text": ..., "expect": ...}]}]}`.
Every chat runs under its own SalesIQ conversation id and every message has its own request id, in the
Zobot message format; a turn is sent only after the previous turn of its chat was answered, as in a
real chat. A reply must be 200 and contain the turn's `expect` text, else it counts as an error.

closed: `concurrency` chats at once, each sending its next message as soon as the answer arrives
        (saturation throughput).
open:   `chats` chats, each sending one message every chats/rate seconds on a fixed schedule, so the
        total is `rate` messages a second whatever the server does. Latency is measured from the
        scheduled send time (a late answer delays the chat's next message and that delay counts:
        no coordinated omission).

Plain sockets with keep-alive and threads (no asyncio, no HTTP library in the measured path), one
thread per chat. Prints one JSON object. `wrk_closed()` drives the same plan with wrk when installed.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from stack import percentile


def zobot_body(text: str, conversation: str, request_id: str, first: bool) -> bytes:
    return json.dumps({
        "handler": "message",
        "operation": "chat" if first else "message",
        "org_id": "55778119",
        "message": {"text": text},
        "visitor": {"active_conversation_id": conversation, "name": "John Doe",
                    "email": f"visitor-{conversation}@bench.example", "channel": "Website"},
        "request": {"id": request_id},
        "attachments": [],
    }, separators=(",", ":")).encode()


class Connection:
    """One keep-alive HTTP/1.1 connection; `post()` returns (status, body)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0):
        self.address = (host, port)
        self.timeout = timeout
        self.sock = None

    def _connect(self):
        self.sock = socket.create_connection(self.address, timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self._connect()
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.address[0]}:{self.address[1]}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.sock.sendall(head + body)
        data = self.buffer
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the response")
            data += chunk
        header, _, rest = data.partition(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, close = None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise ConnectionError("response without Content-Length")
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed inside the body")
            rest += chunk
        self.buffer = rest[length:]
        if close:
            self.close()
        return status, rest[:length]


class Chats:
    """Hands out chats (a plan entry plus a fresh conversation id) to the threads, round robin."""

    def __init__(self, plan: list[dict], run_id: str):
        self.plan = plan
        self.run_id = run_id
        self._n = itertools.count()
        self._requests = itertools.count()

    def next(self, offset: int = 0):
        n = next(self._n)
        return f"{self.run_id}-c{n}", self.plan[(n + offset) % len(self.plan)]

    def request_id(self) -> str:
        return f"{self.run_id}-r{next(self._requests)}"


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.samples: list[tuple[float, str, float, bool]] = []  # (finished at, kind, latency, ok)
        self.failures: list[str] = []
        self.reconnects = 0

    def add(self, finished: float, kind: str, latency: float, ok: bool, detail: str | None = None):
        with self.lock:
            self.samples.append((finished, kind, latency, ok))
            if not ok and detail and len(self.failures) < 10:
                self.failures.append(detail)


def _send(conn: Connection, url_path: str, body: bytes, recorder: Recorder) -> tuple[int, bytes]:
    for attempt in range(3):
        try:
            return conn.post(url_path, body)
        except (OSError, ConnectionError, ValueError, IndexError) as exc:
            conn.close()
            with recorder.lock:
                recorder.reconnects += 1
            if attempt == 2:
                return 0, str(exc).encode()
            # The same request id again: the webhook treats it as a repeat, so nothing is done twice.
    return 0, b""


def _check(status: int, body: bytes, expect: str) -> tuple[bool, str | None]:
    if status != 200:
        return False, f"{status}: {body[:200]!r}"
    if expect and expect.encode() not in body:
        return False, f"expected {expect!r}, got {body[:300]!r}"
    return True, None


def run_closed(plan, host, port, path, concurrency, duration, run_id) -> dict:
    recorder = Recorder()
    chats = Chats(plan, run_id)
    window = {}
    barrier = threading.Barrier(concurrency + 1)

    def chatter(offset):
        conn = Connection(host, port)
        barrier.wait()
        stop_at = window["stop"]
        while time.monotonic() < stop_at:
            conversation, chat = chats.next(offset)
            for i, turn in enumerate(chat["turns"]):
                if time.monotonic() >= stop_at:
                    break
                body = zobot_body(turn["text"], conversation, chats.request_id(), i == 0)
                t0 = time.monotonic()
                status, reply = _send(conn, path, body, recorder)
                t1 = time.monotonic()
                ok, detail = _check(status, reply, turn.get("expect", ""))
                recorder.add(t1, chat["kind"], t1 - t0, ok, detail)
        conn.close()

    threads = [threading.Thread(target=chatter, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    start = time.monotonic()
    window["stop"] = start + duration
    barrier.wait()
    for t in threads:
        t.join()
    # Answers that came after the end of the window are not counted (nor their time).
    recorder.samples = [s for s in recorder.samples if s[0] <= window["stop"]]
    return summarise(recorder, start, window["stop"], mode="closed", concurrency=concurrency)


def run_open(plan, host, port, path, rate, chats_n, duration, run_id) -> dict:
    recorder = Recorder()
    chats = Chats(plan, run_id)
    period = chats_n / rate  # each chat sends one message per period
    start = time.monotonic() + 0.5
    stop_at = start + duration

    def chatter(j):
        conn = Connection(host, port)
        k = 0
        while True:
            conversation, chat = chats.next(j)
            for i, turn in enumerate(chat["turns"]):
                scheduled = start + j / rate + k * period
                k += 1
                if scheduled >= stop_at:
                    conn.close()
                    return
                delay = scheduled - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                body = zobot_body(turn["text"], conversation, chats.request_id(), i == 0)
                status, reply = _send(conn, path, body, recorder)
                t1 = time.monotonic()
                ok, detail = _check(status, reply, turn.get("expect", ""))
                recorder.add(t1, chat["kind"], t1 - scheduled, ok, detail)

    threads = [threading.Thread(target=chatter, args=(j,), daemon=True) for j in range(chats_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = max([s[0] for s in recorder.samples], default=stop_at)
    return summarise(recorder, start, max(end, stop_at), mode="open", rate=rate, chats=chats_n)


def _latency(values: list[float]) -> dict:
    values = sorted(values)
    ms = lambda v: None if v is None else round(v * 1000, 1)
    return {"n": len(values), "p50_ms": ms(percentile(values, 50)), "p90_ms": ms(percentile(values, 90)),
            "p99_ms": ms(percentile(values, 99)), "max_ms": ms(values[-1] if values else None)}


def summarise(recorder: Recorder, start: float, end: float, **info) -> dict:
    samples = recorder.samples
    elapsed = end - start
    kinds = sorted({s[1] for s in samples})
    per_second = [0] * (int(elapsed) + 1)
    for finished, *_ in samples:
        second = int(finished - start)
        if 0 <= second < len(per_second):
            per_second[second] += 1
    return {
        **info,
        "duration_s": round(elapsed, 2),
        "requests": len(samples),
        "errors": sum(1 for s in samples if not s[3]),
        "reconnects": recorder.reconnects,
        "throughput_rps": round(len(samples) / elapsed, 1) if elapsed > 0 else None,
        "latency": _latency([s[2] for s in samples]),
        "by_kind": {k: _latency([s[2] for s in samples if s[1] == k]) for k in kinds},
        "per_second": per_second,
        "failures": recorder.failures,
    }


# ---- wrk --------------------------------------------------------------------------------------------

WRK_LUA = r"""
-- Generated by bench/loadgen.py: one connection per wrk thread, so each thread is one chat at a time.
local chats = %(chats)s
local run_id = "%(run_id)s"
local path = "%(path)s"
local headers = {["Content-Type"] = "application/json"}
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local n, ci, ti, conv, req, expect = 0, 1, 0, nil, 0, ""
errors, mismatches, first_failure = 0, 0, ""

local function esc(s)
  return (s:gsub('\\', '\\\\'):gsub('"', '\\"'))
end

local verified = false

function request()
  if tid == 0 and not verified then
    -- wrk calls request() once on thread 0's state to check the script before the run: not a turn.
    verified = true
    return wrk.format("POST", path, headers, "{}")
  end
  if ti == 0 or ti > #chats[ci].turns then
    n = n + 1
    ci = ((tid + n) %% #chats) + 1
    ti = 1
    conv = run_id .. "-t" .. tid .. "-c" .. n
  end
  local turn = chats[ci].turns[ti]
  req = req + 1
  local op = (ti == 1) and "chat" or "message"
  local body = '{"handler":"message","operation":"' .. op .. '","org_id":"55778119","message":{"text":"'
    .. esc(turn[1]) .. '"},"visitor":{"active_conversation_id":"' .. conv
    .. '","name":"John Doe","email":"visitor-' .. conv .. '@bench.example","channel":"Website"},'
    .. '"request":{"id":"' .. run_id .. "-t" .. tid .. "-r" .. req .. '"},"attachments":[]}'
  expect = turn[2]
  ti = ti + 1
  return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
  if status ~= 200 then
    errors = errors + 1
    if first_failure == "" then first_failure = status .. ": " .. string.sub(body or "", 1, 200) end
  elseif expect ~= "" and not string.find(body, expect, 1, true) then
    mismatches = mismatches + 1
    if first_failure == "" then first_failure = "expected " .. expect .. ": " .. string.sub(body or "", 1, 200) end
  end
end

function done(summary, latency, requests)
  local errs, mism, fail = 0, 0, ""
  for _, t in ipairs(threads) do
    errs = errs + t:get("errors")
    mism = mism + t:get("mismatches")
    if fail == "" then fail = t:get("first_failure") or "" end
  end
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"errors":%%d,"mismatches":%%d,"socket_errors":%%d,' ..
    '"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d,"status_errors":%%d,"first_failure":"%%s"}\n',
    summary.requests, summary.duration, errs, mism,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.status, esc(string.gsub(fail, "[\r\n]", " "))))
end
"""


def _lua_string(text: str) -> str:
    # A JSON string literal without \u escapes is a valid Lua string literal (plan texts are one line).
    return json.dumps(text, ensure_ascii=False)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_closed(plan, url, concurrency, duration, run_id) -> dict:
    """The closed loop with wrk: `concurrency` threads of one connection each."""
    path = urlsplit(url).path or "/"
    chats = "{" + ",".join(
        "{turns={" + ",".join(f"{{{_lua_string(t['text'])},{_lua_string(t.get('expect', ''))}}}"
                              for t in chat["turns"]) + "}}"
        for chat in plan) + "}"
    script = WRK_LUA % {"chats": chats, "run_id": run_id, "path": path}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
        lua = fh.name
    try:
        out = subprocess.run(
            ["wrk", "-t", str(concurrency), "-c", str(concurrency), "-d", f"{duration}s", "--timeout", "10s",
             "-s", lua, url], capture_output=True, text=True, check=True,
        )
    finally:
        os.unlink(lua)
    line = next((l for l in out.stdout.splitlines() if l.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError("wrk printed no result:\n" + out.stdout + out.stderr)
    raw = json.loads(line[len("WRKJSON "):])
    seconds = raw["duration_us"] / 1e6
    ms = lambda us: round(us / 1000, 1)
    return {
        "mode": "closed", "tool": "wrk", "concurrency": concurrency, "duration_s": round(seconds, 2),
        "requests": raw["requests"], "errors": raw["errors"] + raw["mismatches"] + raw["socket_errors"],
        "throughput_rps": round(raw["requests"] / seconds, 1),
        "latency": {"n": raw["requests"], "p50_ms": ms(raw["p50_us"]), "p90_ms": ms(raw["p90_us"]),
                    "p99_ms": ms(raw["p99_us"]), "max_ms": ms(raw["max_us"])},
        "failures": [raw["first_failure"]] if raw["first_failure"] else [],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("closed", "open"))
    parser.add_argument("plan")
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--run-id", default=f"b{os.getpid()}")
    parser.add_argument("--tool", choices=("python", "wrk"), default="python")
    args = parser.parse_args(argv)
    sys.setswitchinterval(0.001)  # threads hand the GIL over quickly: less client-side delay in the timings
    with open(args.plan) as fh:
        plan = json.load(fh)["chats"]
    parts = urlsplit(args.url)
    if args.mode == "closed" and args.tool == "wrk":
        result = wrk_closed(plan, args.url, args.concurrency, int(args.duration), args.run_id)
    elif args.mode == "closed":
        result = run_closed(plan, parts.hostname, parts.port, parts.path, args.concurrency, args.duration,
                            args.run_id)
        result["tool"] = "python"
    else:
        result = run_open(plan, parts.hostname, parts.port, parts.path, args.rate, args.chats, args.duration,
                          args.run_id)
        result["tool"] = "python"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
