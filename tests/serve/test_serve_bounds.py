"""Bounded serving against a real ``audiomcq serve`` on 127.0.0.1 with short timeouts: ``--host``, request bodies
limited in size (413 before parsing, memory flat) and in time (408), a 40 MiB binary V2 body decoded while health
probes are answered, clients that hang up counted as disconnects (not server errors) without a traceback, and
headers bounded. Every client loop is bounded in count and time; ``tests/serve/test_serve_bounds_units.py`` has the
in-process parts."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import free_port

pytest.importorskip("kserve")
MAX_BODY = 48 * 1024 * 1024
SERVER_ARGS = [
    "--host",
    "127.0.0.1",
    "--max-wait-ms",
    "300",
    "--max-body-bytes",
    str(MAX_BODY),
    "--body-timeout-s",
    "2",
    "--header-timeout-s",
    "1.5",
    "--max-header-bytes",
    "16384",
]


def _wav(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    noise = np.random.default_rng(0).standard_normal(int(seconds * rate)).astype(np.float32) * 0.1
    sf.write(buf, noise, rate, format="WAV")
    return buf.getvalue()


class Served:
    """A running ``audiomcq serve``: its port, process id and log file."""

    def __init__(self, port: int, pid: int, log: Path) -> None:
        self.port, self.pid, self.log = port, pid, log
        self.base = f"http://127.0.0.1:{port}"

    def memory_mib(self) -> dict[str, int]:
        """VmRSS and VmHWM (its peak) of the server process, in MiB."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        return {k: int(re.search(rf"^{k}:\s+(\d+) kB", text, re.MULTILINE)[1]) // 1024 for k in ("VmRSS", "VmHWM")}

    def metric(self, name: str, **labels: str) -> float:
        text = urllib.request.urlopen(f"{self.base}/metrics", timeout=10).read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="module")
def served(tiny_omni, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-bounds") / "server.log"
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "audiomcq.cli",
        "--log-level",
        "info",
        "serve",
        "--model-dir",
        str(tiny_omni),
        "--http-port",
        str(port),
        *SERVER_ARGS,
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
        yield Served(port, proc.pid, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _connect(served: Served, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", served.port), timeout=timeout)


def _head(path: str, extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}\r\n".encode()


def _response(sock: socket.socket, wait: float) -> bytes:
    """What the server sent before it closed the connection, within ``wait`` seconds."""
    sock.settimeout(wait)
    deadline, data = time.monotonic() + wait, b""
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def test_host_127_0_0_1_listens_on_loopback_only(served):
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == served.port:
                listening.append((table, local.rsplit(":", 1)[0]))
    assert listening == [("/proc/net/tcp", "0100007F")]  # 127.0.0.1, and not 0.0.0.0 nor ::


def _probe_while(served: Served, post, probe: str = "/v2/health/live") -> list[float]:
    """Seconds each ``probe`` took while ``post`` ran on another thread (inf: no answer within 1 s)."""
    sender = threading.Thread(target=post)
    sender.start()
    probes = []
    for _ in range(400):  # bounded: about 20 s at most
        if not sender.is_alive() and len(probes) >= 5:
            break
        start = time.perf_counter()
        try:
            urllib.request.urlopen(f"{served.base}{probe}", timeout=1).read()
            probes.append(time.perf_counter() - start)
        except OSError:
            probes.append(float("inf"))
        time.sleep(0.02)
    sender.join(timeout=60)
    return probes


@pytest.mark.slow
def test_a_40_mib_binary_v2_body_leaves_the_health_probe_answered_within_a_second(served):
    from kserve.protocol.infer_type import InferInput, InferRequest

    size = 40 * 1024 * 1024
    n = size // 10  # 4 Mi elements of 6 bytes behind a header that claims one: kserve walks each in Python
    many = (struct.pack("<I", 6) + b"qqqqqq") * n
    header = json.dumps(
        {
            "inputs": [
                {"name": "question", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(many)}}
            ]
        }
    ).encode()
    inputs = []
    audio = base64.b64encode(b"\x01" * (size // 4 - 64)).decode()  # three ~13 MB elements to decode
    for name, value in (("question", "What is heard?"), ("choices", '["a", "b"]'), ("audio", audio)):
        t = InferInput(name, [3], "BYTES")
        t.set_data_from_numpy(np.array([value.encode()] * 3, dtype=np.object_), binary_data=True)
        inputs.append(t)
    big, length = InferRequest("audiomcq", inputs).to_rest()
    for body, json_length, reason in ((header + many, len(header), "binary elements"), (big, length, "instance 0")):
        assert size - 1024 * 1024 < len(body) <= size + 1024
        outcome: dict = {}

        def post(body=body, json_length=json_length, outcome=outcome) -> None:
            req = urllib.request.Request(
                f"{served.base}/v2/models/audiomcq/infer",
                data=body,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Inference-Header-Content-Length": str(json_length),
                },
            )
            try:
                urllib.request.urlopen(req, timeout=60)
            except urllib.error.HTTPError as err:
                outcome["status"], outcome["body"] = err.code, err.read().decode()

        probes = _probe_while(served, post, "/v2/health/ready")
        assert max(probes) < 1.0, f"slowest probe {max(probes):.2f} s of {len(probes)}"
        assert outcome.get("status") == 400 and reason in outcome["body"], outcome


@pytest.mark.slow
def test_a_large_v1_or_chat_json_body_leaves_the_health_probe_answered_within_a_second(served):
    size = 36 * 1024 * 1024
    floats = b",".join([b"1.5"] * (size // 4))  # 9 Mi numbers: seconds of parsing, all of it holding the GIL
    audio = base64.b64encode(b"\x01" * (size * 3 // 4 - 4096)).decode()  # one huge clip: a fast parse
    v1_audio = json.dumps({"instances": [{"audio": audio, "question": "What is heard?", "choices": ["a", "b"]}]})
    chat_audio = json.dumps(
        {
            "model": "audiomcq",
            "messages": [
                {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}]}
            ],
        }
    )
    cases = (
        ("/v1/models/audiomcq:predict", b'{"instances": [' + floats + b"]}", "JSON separators"),
        ("/v1/models/audiomcq:predict", v1_audio.encode(), "instance 0"),
        ("/openai/v1/chat/completions", b'{"model": "audiomcq", "messages": [' + floats + b"]}", "JSON separators"),
        ("/openai/v1/chat/completions", chat_audio.encode(), "audio"),
    )
    for path, body, reason in cases:
        assert size - 1024 * 1024 < len(body) <= size + 1024
        outcome: dict = {}

        def post(path=path, body=body, outcome=outcome) -> None:
            # no Content-Type given: urllib labels it a form, as curl -d does, and it is read as JSON all the same
            try:
                urllib.request.urlopen(urllib.request.Request(f"{served.base}{path}", data=body), timeout=60)
            except urllib.error.HTTPError as err:
                outcome["status"], outcome["body"] = err.code, err.read().decode()

        probes = _probe_while(served, post)
        assert max(probes) < 1.0, f"{path} {reason}: slowest probe {max(probes):.2f} s of {len(probes)}"
        assert outcome.get("status") == 400 and reason in outcome["body"], (path, outcome)


def test_an_oversized_body_is_413_before_it_is_read_and_memory_stays_flat(served):
    before = served.memory_mib()
    with _connect(served) as sock:
        sock.sendall(_head("/v1/models/audiomcq:predict", "Content-Length: 400000000\r\n") + b"{" * 65536)
        reply = _response(sock, 10)
    assert reply.startswith(b"HTTP/1.1 413") and b"--max-body-bytes" in reply, reply[:300]
    after = served.memory_mib()
    assert after["VmHWM"] - before["VmHWM"] < 32 and after["VmRSS"] - before["VmRSS"] < 32, (before, after)
    # without a Content-Length (chunked), the body is cut once it passes the limit, not read to its end
    with _connect(served) as sock:
        sock.sendall(_head("/v2/models/audiomcq/infer", "Transfer-Encoding: chunked\r\n"))
        chunk = b"%x\r\n%s\r\n" % (1024 * 1024, b"[" * 1024 * 1024)
        sent, reply = 0, b""
        for _ in range(200):  # bounded: at most 200 MiB
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(chunk)
                sent += 1
            except OSError:
                break
        reply = _response(sock, 10)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
    assert sent < 120, f"{sent} MiB were sent before the refusal"
    assert served.memory_mib()["VmHWM"] - before["VmHWM"] < 4 * MAX_BODY // (1024 * 1024)


def test_clients_that_hang_up_are_disconnects_not_server_errors_and_log_no_traceback(served):
    disconnects = served.metric("audiomcq_serve_errors_total", kind="disconnect")
    batches = served.metric("audiomcq_serve_batch_size_count")
    clip = base64.b64encode(_wav(2.0)).decode()
    whole = json.dumps({"instances": [{"audio": clip, "question": "What is heard?", "choices": ["a", "b"]}]})
    for path, length, sent in (
        ("/v1/models/audiomcq:predict", 5000, b'{"instances": ['),  # gone while sending the body
        ("/openai/v1/chat/completions", 5000, b'{"model": "audiomcq", "messages'),
        ("/v1/models/audiomcq:predict", len(whole), whole.encode()),  # gone while its question waits for a batch
    ):
        with _connect(served) as sock:
            sock.sendall(_head(path, f"Content-Length: {length}\r\n") + sent)
            time.sleep(0.1)
    for _ in range(50):  # bounded: 5 s
        if served.metric("audiomcq_serve_errors_total", kind="disconnect") >= disconnects + 3:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # past the 300 ms batch wait: a question still queued would have been run by now
    assert served.metric("audiomcq_serve_errors_total", kind="disconnect") == disconnects + 3
    assert served.metric("audiomcq_serve_errors_total", kind="server") == 0
    assert served.metric("audiomcq_serve_requests_total", code="499") >= 3
    assert served.metric("audiomcq_serve_batch_size_count") == batches  # the abandoned question never ran
    log = served.log.read_text()
    assert log.count("client went away") >= 3 and "Traceback" not in log


@pytest.mark.slow
def test_a_body_trickled_byte_by_byte_is_cut_by_the_body_timeout(served):
    with _connect(served) as sock:
        sock.sendall(_head("/v1/models/audiomcq:predict", "Content-Length: 1000\r\n"))
        start, reply = time.monotonic(), b""
        for _ in range(40):  # bounded: 10 s of one byte every 0.25 s
            if select.select([sock], [], [], 0.25)[0]:
                reply = _response(sock, 2)
                break
            try:
                sock.sendall(b" ")
            except OSError:
                reply = _response(sock, 2)
                break
        elapsed = time.monotonic() - start
    assert reply.startswith(b"HTTP/1.1 408") and b"--body-timeout-s" in reply, reply[:300]
    assert 1.5 < elapsed < 5, elapsed


@pytest.mark.slow
def test_slow_or_oversized_headers_and_idle_connections_are_closed(served):
    timeouts = served.metric("audiomcq_serve_connections_closed_total", reason="header_timeout")
    with _connect(served) as sock:
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        start = time.monotonic()
        for _ in range(20):  # bounded: a header byte every 0.25 s for 5 s
            if select.select([sock], [], [], 0.25)[0]:
                break
            sock.sendall(b"X")
        reply = _response(sock, 2)
        assert reply.startswith(b"HTTP/1.1 408") and 1.0 < time.monotonic() - start < 4, reply
    with _connect(served) as sock:  # a connection that never asks anything is closed, without a reply
        start = time.monotonic()
        assert _response(sock, 6) == b"" and 1.0 < time.monotonic() - start < 4
    with _connect(served) as sock:
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
        reply = _response(sock, 5)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert served.metric("audiomcq_serve_connections_closed_total", reason="header_timeout") == timeouts + 1
    assert served.metric("audiomcq_serve_connections_closed_total", reason="header_too_large") >= 1
    # the server still answers normally
    assert urllib.request.urlopen(f"{served.base}/v2/health/ready", timeout=5).status == 200
