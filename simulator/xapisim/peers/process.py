"""Stopping the peer daemons the tests started."""

import subprocess


def stop(proc, timeout=10):
    """End a child process of ours (a subprocess.Popen, or None): SIGTERM, SIGKILL if it
    has not exited within `timeout` seconds; reaped either way."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
