"""Start one Python script as two JAX processes on 127.0.0.1 (two CPU devices each), as the
multi-process tests do; the environment names the coordinator, the count and each process id, and
puts tests/ on PYTHONPATH so the script imports what the tests import (`helpers`)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

NUM_PROCESSES = 2
TESTS = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(script: Path, args: list[str], *, cwd: Path | None = None) -> list[subprocess.Popen]:
    """Both processes of `python script args...`, stdout and stderr piped apart, text mode,
    each in its own session (so a test can signal one process group)."""
    port = free_port()
    procs = []
    for pid in range(NUM_PROCESSES):
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_NUM_PROCESSES": str(NUM_PROCESSES),
            "JAX_PROCESS_ID": str(pid),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), *args],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    return procs


def finish(procs: list[subprocess.Popen], timeout_s: float) -> list[tuple[int, str, str]]:
    """(exit status, stdout, stderr) of each process; all are killed on a timeout."""
    try:
        outputs = [proc.communicate(timeout=timeout_s) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    return [(proc.returncode, *out) for proc, out in zip(procs, outputs, strict=True)]
