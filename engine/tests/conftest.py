"""Test setup: the engine and the starter configuration importable from the source tree,
and helpers to run the engine in-process (as the warm pool will) or as a subprocess."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ENGINE_SRC = os.path.join(os.path.dirname(__file__), "..", "src")
TEMPLATE_SRC = os.path.join(ENGINE_SRC, "ade_engine", "templates", "config", "src")
SAMPLES = os.path.join(os.path.dirname(__file__), "..", "samples")
sys.path.insert(0, os.path.abspath(ENGINE_SRC))

from ade_engine import cli  # noqa: E402


def _forget_config() -> None:
    for name in [m for m in sys.modules if m == "ade_config" or m.startswith("ade_config.")]:
        del sys.modules[name]


_config_paths: list[str] = []


def use_config(src_dir: str) -> None:
    """Make the `ade_config` under `src_dir` the one the engine imports."""
    _forget_config()
    while _config_paths:
        path = _config_paths.pop()
        if path in sys.path:
            sys.path.remove(path)
    _config_paths.append(os.path.abspath(src_dir))
    sys.path.insert(0, _config_paths[0])


@pytest.fixture(autouse=True)
def template_config():
    """Every test starts with the starter template as the configuration."""
    use_config(TEMPLATE_SRC)
    yield
    _forget_config()


@pytest.fixture(params=["calamine", "openpyxl"])
def xlsx_reader(request, monkeypatch):
    """Run a workbook test with each reader: calamine, and openpyxl (streaming, for huge sheets)."""
    from ade_engine.readers import workbook as module

    if request.param == "openpyxl":
        monkeypatch.setattr(module, "CALAMINE_MAX_SHEET_BYTES", -1)
    return request.param


@pytest.fixture
def config_package(tmp_path):
    """Write an `ade_config` package from {module: source} and make it the configuration."""

    def make(files: dict[str, str], base_template: bool = False) -> str:
        root = tmp_path / "ade-test-config" / "src"
        package = root / "ade_config"
        package.mkdir(parents=True)
        if base_template:
            template = os.path.join(TEMPLATE_SRC, "ade_config")
            for name in os.listdir(template):
                if name.endswith(".py"):
                    (package / name).write_text(open(os.path.join(template, name)).read())
        elif "__init__.py" not in files:
            (package / "__init__.py").write_text("")
        for name, source in files.items():
            (package / name).write_text(textwrap.dedent(source))
        use_config(str(root))
        return str(package)

    return make


class Result:
    """What one engine invocation did."""

    def __init__(self, code, events, stdout, stderr, out_dir):
        self.code = code
        self.events = events
        self.stdout = stdout
        self.stderr = stderr
        self.out_dir = out_dir

    def of(self, kind: str) -> list[dict]:
        """Payloads of the events of one type."""
        return [e["payload"] for e in self.events if e["type"] == kind]

    def one(self, kind: str) -> dict:
        found = self.of(kind)
        assert len(found) == 1, f"{len(found)} {kind} events: {self.events}"
        return found[0]

    @property
    def tables(self) -> list[dict]:
        return self.of("run.table.summary")

    @property
    def issues(self) -> list[dict]:
        return self.of("run.validation.issue")

    def mapping(self, table: int = 0) -> dict:
        """field → source header of a table."""
        return {f: m["column"] for f, m in self.tables[table]["mapped"].items()}

    def outputs(self) -> list[str]:
        return sorted(os.listdir(self.out_dir)) if os.path.isdir(self.out_dir) else []

    def csv(self, name: str) -> list[list[str]]:
        import csv

        with open(os.path.join(self.out_dir, name), newline="", encoding="utf-8") as handle:
            return list(csv.reader(handle))


def read_events(path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture
def engine(tmp_path, capsys, monkeypatch):
    """Run `main(["run", ...])` in this process over the given input paths."""

    def run(*inputs, args=(), out_dir=None) -> Result:
        out_dir = str(out_dir or tmp_path / "out")
        events_path = tmp_path / f"events-{len(list(tmp_path.glob('events-*')))}.jsonl"
        fd = os.open(events_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        monkeypatch.setenv("ADE_EVENTS_FD", str(fd))
        argv = ["run"]
        for path in inputs:
            argv += ["--input", str(path)]
        argv += ["--output-dir", out_dir, *args]
        code = cli.main(argv)
        captured = capsys.readouterr()
        return Result(code, read_events(events_path), captured.out, captured.err, out_dir)

    return run


def run_process(args, env_extra=None, preexec_fn=None, config_src=TEMPLATE_SRC, cwd=None, pass_fds=()):
    """Run `python -m ade_engine ...` as its own process; (returncode, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "ADE_EVENTS_FD"}
    env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(ENGINE_SRC), os.path.abspath(config_src)])
    env.update(env_extra or {})
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          preexec_fn=preexec_fn, cwd=cwd, timeout=120, pass_fds=pass_fds)
    return done.returncode, done.stdout, done.stderr


def write(path, text: str, encoding: str = "utf-8") -> str:
    """Write a text input file; returns its path."""
    with open(path, "w", encoding=encoding, newline="") as handle:
        handle.write(text)
    return str(path)


def workbook(path, sheets: dict[str, list[list]], merged: dict[str, list[str]] | None = None) -> str:
    """Write an XLSX with openpyxl: {sheet title: rows}; `merged` ranges per sheet."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
        for cells in (merged or {}).get(title, []):
            sheet.merge_cells(cells)
    book.save(path)
    return str(path)
