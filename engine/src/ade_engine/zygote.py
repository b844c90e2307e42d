"""The warm engine ("zygote"): import the engine and the configuration once,
then fork one child per run on the worker's request.

The worker starts `python -m ade_engine.zygote` from a build's venv (inside
the sandbox when there is one) with a SOCK_SEQPACKET socket in the file
descriptor named by ADE_ZYGOTE_FD. Messages are JSON; file descriptors
travel beside them (SCM_RIGHTS):

- zygote -> worker `{"op": "ready"}` once everything is imported;
- worker -> zygote `{"op": "run", "id": N, "argv": [...], "cwd": ...,
  "env": {...}, "inputs": [names...], "limits": {...}}` with the run's
  stdout, stderr and events pipes, then one descriptor per input file;
- zygote -> worker `{"op": "started", "id": N}`, later
  `{"op": "exited", "id": N, "code": C}` (128 + signal when killed);
- worker -> zygote `{"op": "kill", "id": N}`: the run dies with everything
  it started.

Each run is a child (A) that makes a new user and PID namespace and forks
its PID 1 (B), which forks the engine (C): when C ends B ends, and when B
ends, or A is killed, the kernel kills every process the run started, even
double-forked, `setsid` ones. The engine is not PID 1 so that signals reach
it as they reach a spawned engine (PID 1 ignores those it has no handler
for). C is in its own session, has the run's rlimits, its working folder,
and inputs reachable only as descriptors of regular files (never a
directory of the host), and calls `ade_engine.cli.main(argv)` exactly as a
spawned engine.
"""

import ctypes
import json
import os
import selectors
import signal
import socket
import sys

ZYGOTE_FD_ENV = "ADE_ZYGOTE_FD"
MAX_MESSAGE = 1 << 20
MAX_FDS = 64
PR_SET_PDEATHSIG = 1
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
INPUT_FD_BASE = 10


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _die_with_parent(libc) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _new_namespaces(libc) -> None:
    """A user namespace mapping our own ids, and a PID namespace for our next child."""
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0:
        raise OSError(ctypes.get_errno(), "unshare failed")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")


def _apply_limits(limits: dict) -> None:
    import resource

    names = {
        "cpu_seconds": resource.RLIMIT_CPU,
        "address_space_bytes": resource.RLIMIT_AS,
        "file_size_bytes": resource.RLIMIT_FSIZE,
        "open_files": resource.RLIMIT_NOFILE,
        "processes": resource.RLIMIT_NPROC,
    }
    for name, value in limits.items():
        if name in names and value is not None:
            # As for a spawned engine: SIGXCPU at the CPU limit, SIGKILL 5 s later.
            hard = int(value) + 5 if name == "cpu_seconds" else int(value)
            resource.setrlimit(names[name], (int(value), hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _exit_code(status: int) -> int:
    """A wait status as the worker reports it: the exit code, or 128 + signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _init(req: dict, fds: list) -> None:
    """B, PID 1 of the run's namespace: fork the engine, wait, exit as it did."""
    code = 70
    try:
        _die_with_parent(_libc())
        pid = os.fork()
        if pid == 0:
            try:
                _engine(req, fds)
            finally:
                os._exit(70)
        for fd in fds:
            os.close(fd)
        code = _exit_code(os.waitpid(pid, 0)[1])
    finally:
        os._exit(code & 0xFF)


def _engine(req: dict, fds: list) -> None:
    """C, the run itself. Never returns."""
    libc = _libc()
    _die_with_parent(libc)
    os.setsid()
    stdout, stderr, events, *inputs = fds
    null = os.open(os.devnull, os.O_RDONLY)
    for target, fd in ((0, null), (1, stdout), (2, stderr), (3, events)):
        os.dup2(fd, target)
    names = req.get("inputs", [])
    os.chdir(req["cwd"])
    links = os.path.join(req["cwd"], "inputs")
    os.makedirs(links, exist_ok=True)
    for i, (name, fd) in enumerate(zip(names, inputs)):
        fixed = INPUT_FD_BASE + i
        os.dup2(fd, fixed)
        os.symlink(f"/proc/self/fd/{fixed}", os.path.join(links, name))
    keep = {0, 1, 2, 3, *range(INPUT_FD_BASE, INPUT_FD_BASE + len(names))}
    for fd in set(fds) | {null}:
        if fd not in keep:
            os.close(fd)
    os.environ.clear()
    os.environ.update(req.get("env", {}))
    _apply_limits(req.get("limits", {}))
    from .cli import main

    code = 1
    try:
        code = main(req["argv"])
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code if isinstance(code, int) else 1)


def _run(req: dict, fds: list) -> None:
    """A: new namespaces, fork their PID 1, relay its exit. Never returns."""
    code = 70
    try:
        libc = _libc()
        _die_with_parent(libc)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _new_namespaces(libc)
        pid = os.fork()
        if pid == 0:
            try:
                _init(req, fds)
            finally:
                os._exit(70)
        for fd in fds:
            os.close(fd)
        code = _exit_code(os.waitpid(pid, 0)[1])
    except BaseException as exc:  # report, never fall back into the zygote's loop
        try:
            os.write(2, f"ade-engine zygote: the run could not start: {exc}\n".encode())
        except OSError:
            pass
    os._exit(code & 0xFF)


class Zygote:
    """The loop: requests from the worker, exits of children."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.children = {}  # pid -> run id
        self.selector = selectors.DefaultSelector()
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector.register(sock, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)

    def send(self, message: dict) -> None:
        self.sock.send(json.dumps(message).encode())

    def serve(self) -> None:
        self.send({"op": "ready"})
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.sock:
                    if not self.receive():
                        return
                else:
                    os.read(self.wake_r, 4096)
                    self.reap()

    def receive(self) -> bool:
        data, fds, _, _ = socket.recv_fds(self.sock, MAX_MESSAGE, MAX_FDS)
        if not data:
            return False
        req = json.loads(data)
        if req.get("op") == "run":
            pid = os.fork()
            if pid == 0:
                _run(req, fds)
            for fd in fds:
                os.close(fd)
            self.children[pid] = req["id"]
            self.send({"op": "started", "id": req["id"]})
        elif req.get("op") == "kill":
            for pid, run in self.children.items():
                if run == req.get("id"):
                    os.kill(pid, signal.SIGKILL)
        return True

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = self.children.pop(pid, None)
            if run is not None:
                self.send({"op": "exited", "id": run, "code": _exit_code(status)})


def main() -> int:
    """Import everything a run needs, then serve the worker until it hangs up."""
    sock = socket.socket(fileno=int(os.environ.pop(ZYGOTE_FD_ENV)))
    _die_with_parent(_libc())
    from . import preload

    preload()
    Zygote(sock).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
