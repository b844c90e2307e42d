"""The warm engine ("zygote"): import the engine and the configuration once,
then fork one child per run on the worker's request.

The worker starts `python -m ade_engine.zygote` from a build's venv, in a
sandbox that sees the venv read-only and nothing writable of the host, with
a SOCK_SEQPACKET socket in the file descriptor named by ADE_ZYGOTE_FD.
Messages are JSON; file descriptors travel beside them (SCM_RIGHTS).

On the zygote's socket:

- zygote -> worker `{"op": "ready"}` once everything is imported and the
  zygote is alone in its sandbox, or `{"op": "refused", "why": ...}` when
  the configuration left a process or a thread behind at import (they are
  killed; the worker then spawns this build's runs);
- worker -> zygote `{"op": "run", "argv": [...], "env": {...}, "inputs":
  [names...], "limits": {...}, "area_bytes": N, "tmp_bytes": N}` with the
  run's stdout, stderr and events pipes, the run's own socket, then one
  descriptor per input file.

On the run's own socket (the zygote keeps no copy of it):

- A -> worker `{"op": "hello"}`: the worker reads A's pid from the socket's
  credentials (the kernel's word, not ours), moves A into the run's cgroup,
  and answers `{"op": "go"}`;
- B -> worker `{"op": "area"}` with the descriptor of the run's area (the
  tmpfs it works and writes its outputs in);
- B -> worker `{"op": "exited", "code": C}` (128 + signal when killed).

Each run is a child A that makes new user, PID, mount, IPC and network
namespaces and forks their PID 1, B. B mounts the run's own /proc (only its
processes), a fresh size-capped /tmp and the area, brings up loopback, and
forks the engine, C. When C ends, B kills whatever the run left and exits;
when B ends, or A is killed, the kernel kills every process of the run. C
is in its own session, has no capability and `no_new_privs`, the run's
rlimits, only the descriptors of the protocol (0-3 and its inputs; never
the zygote's socket, never the run's), and calls `ade_engine.cli.main`
exactly as a spawned engine. Module-level configuration code runs once, in
the zygote, before any run.
"""

import ctypes
import fcntl
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys

ZYGOTE_FD_ENV = "ADE_ZYGOTE_FD"
MAX_MESSAGE = 1 << 20
MAX_FDS = 64
INPUT_FD_BASE = 10
AREA = "/run/ade/run"
WORK = AREA + "/work"

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 1
RLIMITS = {
    "cpu_seconds": resource.RLIMIT_CPU,
    "address_space_bytes": resource.RLIMIT_AS,
    "file_size_bytes": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "processes": resource.RLIMIT_NPROC,
}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _close_all_but(keep) -> None:
    """Close every descriptor from 3 up that is not in `keep`."""
    low = 3
    for fd in sorted(set(keep)):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _exit_code(status: int) -> int:
    """A wait status as the worker reports it: the exit code, or 128 + signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _send(sock: socket.socket, message: dict, fds=()) -> None:
    socket.send_fds(sock, [json.dumps(message).encode()], list(fds))


# --- A: the run's namespaces ------------------------------------------------


def _run(req: dict, fds: list) -> None:
    """A: say hello, wait for the worker, make the run's namespaces, fork
    their PID 1 and wait for it. Never returns."""
    code = 70
    stderr = fds[1]
    try:
        _die_with_parent()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _close_all_but(fds)
        sock = socket.socket(fileno=fds[3])
        sock.send(b'{"op": "hello"}')
        answer = sock.recv(4096)
        if json.loads(answer or b"{}").get("op") != "go":
            os._exit(70)
        uid, gid = os.getuid(), os.getgid()
        flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET
        _check(_libc.unshare(flags), "unshare")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
        pid = os.fork()
        if pid == 0:
            _init(req, sock, fds)
        sock.detach()
        for fd in fds:
            os.close(fd)
        code = _exit_code(os.waitpid(pid, 0)[1])
    except BaseException as exc:  # report, never fall back into the zygote's loop
        _say(stderr, f"ade-engine zygote: the run could not start: {exc}")
    os._exit(code & 0xFF)


def _say(fd: int, text: str) -> None:
    try:
        os.write(fd, (text + "\n").encode())
    except OSError:
        pass


# --- B: PID 1 of the run ----------------------------------------------------


def _init(req: dict, sock: socket.socket, fds: list) -> None:
    """B: the run's mounts, its area handed to the worker, the engine forked
    and waited for, everything else killed. Never returns."""
    code = 70
    try:
        _die_with_parent()
        _mounts(req)
        _loopback_up()
        area = os.open(AREA, os.O_DIRECTORY | os.O_RDONLY)
        _send(sock, {"op": "area"}, [area])
        os.close(area)
        # No user namespace of its own for configuration code.
        _write("/proc/sys/user/max_user_namespaces", "0")
        engine = os.fork()
        if engine == 0:
            try:
                _engine(req, fds)
            finally:
                os._exit(70)
        for fd in fds:
            if fd != sock.fileno():
                os.close(fd)
        code = _wait_for(engine)
        # The run is over: whatever it left goes now.
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap_all()
        _send(sock, {"op": "exited", "code": code})
    except BaseException as exc:
        _say(fds[1], f"ade-engine zygote: the run could not start: {exc}")
    os._exit(code & 0xFF)


def _mounts(req: dict) -> None:
    """Private mounts: the run's own /proc, /tmp and area."""
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    _check(_libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mounting /proc")
    for target, size, mode in ((AREA, req["area_bytes"], "0755"), ("/tmp", req["tmp_bytes"], "1777")):
        options = f"size={int(size)},mode={mode}".encode()
        _check(_libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options), f"mounting {target}")
    os.mkdir(WORK)
    os.mkdir(AREA + "/outputs")


def _loopback_up() -> None:
    """The run's network namespace has only loopback; bring it up, as a spawned sandbox has it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _wait_for(pid: int) -> int:
    """Reap children until `pid` ends; its exit code."""
    while True:
        done, status = os.waitpid(-1, 0)
        if done == pid:
            return _exit_code(status)


def _reap_all() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


# --- C: the engine ----------------------------------------------------------


def _engine(req: dict, fds: list) -> None:
    """C, the run itself. Never returns."""
    _die_with_parent()
    os.setsid()
    stdout, stderr, events, _run_socket, *inputs = fds
    null = os.open(os.devnull, os.O_RDONLY)
    for target, fd in ((0, null), (1, stdout), (2, stderr), (3, events)):
        os.dup2(fd, target)
    names = req.get("inputs", [])
    links = os.path.join(WORK, "inputs")
    os.makedirs(links, exist_ok=True)
    for i, (name, fd) in enumerate(zip(names, inputs)):
        fixed = INPUT_FD_BASE + i
        os.dup2(fd, fixed)
        os.symlink(f"/proc/self/fd/{fixed}", os.path.join(links, name))
    _close_all_but([3, *range(INPUT_FD_BASE, INPUT_FD_BASE + len(names))])
    os.chdir(WORK)
    os.environ.clear()
    os.environ.update(req.get("env", {}))
    _apply_limits(req.get("limits", {}))
    _drop_privileges()
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


def _apply_limits(limits: dict) -> None:
    for name, value in limits.items():
        if name in RLIMITS and value is not None:
            value = int(value)
            if value >= 1 << 63:
                value = resource.RLIM_INFINITY
            # As for a spawned engine: SIGXCPU at the CPU limit, SIGKILL 5 s later.
            hard = value + 5 if name == "cpu_seconds" else value
            resource.setrlimit(RLIMITS[name], (value, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _drop_privileges() -> None:
    """No capability, in any set, and none to gain (as bubblewrap's --cap-drop ALL)."""
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        last = int(handle.read())
    for cap in range(last + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "dropping a capability")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clearing ambient capabilities")
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.capset(header, data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


# --- the zygote itself ------------------------------------------------------


def _strays() -> str:
    """Why the zygote is not alone after the import (strays are killed), or ''."""
    me = os.getpid()
    others = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]
    seen = []
    for pid in others:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            command = "?"
        seen.append(f"pid {pid}: {command[:60]}")
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    threads = len(os.listdir("/proc/self/task"))
    why = []
    if seen:
        why.append(f"it left {len(seen)} process(es) running ({'; '.join(seen)}); they were killed")
    if threads > 1:
        why.append(f"it left {threads - 1} thread(s) running")
    return " and ".join(why)


class Zygote:
    """The loop: requests from the worker, exits of children."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.children = set()
        self.selector = selectors.DefaultSelector()
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector.register(sock, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)

    def serve(self) -> None:
        self.sock.send(b'{"op": "ready"}')
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
        if req.get("op") == "run" and len(fds) >= 4:
            pid = os.fork()
            if pid == 0:
                _run(req, fds)
            self.children.add(pid)
        for fd in fds:
            os.close(fd)
        return True

    def reap(self) -> None:
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)


def main() -> int:
    """Import everything a run needs, check nothing was left running, then
    serve the worker until it hangs up."""
    sock = socket.socket(fileno=int(os.environ.pop(ZYGOTE_FD_ENV)))
    _die_with_parent()
    from . import preload

    preload()
    why = _strays()
    if why:
        sock.send(json.dumps({"op": "refused", "why": f"the configuration, once imported: {why}"}).encode())
        return 3
    Zygote(sock).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
