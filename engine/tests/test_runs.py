"""Run-level behaviour: dry runs, output names, events, limits, and the command line as a process."""

import json
import os
import resource

import openpyxl

from conftest import SAMPLES, TEMPLATE_SRC, run_process, write

MEMBERS = os.path.join(SAMPLES, "members.csv")


def test_a_dry_run_and_validate_only_write_nothing(engine, tmp_path):
    for flag in ("--dry-run", "--validate-only"):
        out = tmp_path / flag.strip("-")
        result = engine(MEMBERS, args=[flag], out_dir=out)
        assert result.code == 0
        assert not out.exists(), f"{flag} created the output directory"
        assert result.one("run.table.summary")["outputs"] == {"csv": None, "xlsx": None, "xlsx_sheet": None}
        summary = result.one("run.validation.summary")["summary"]
        assert summary["outputs"] == [] and summary["rows"] == 12 and summary["mode"] == flag.strip("-").replace("-", "_")


def test_output_names_come_only_from_the_input_file_name(engine, tmp_path):
    odd = write(tmp_path / ".hidden name;rm -rf.csv", open(MEMBERS).read())
    same_stem = write(tmp_path / "members.tsv", open(MEMBERS).read())
    result = engine(odd, MEMBERS, same_stem)
    assert result.code == 0, result.stderr
    assert result.outputs() == ["hidden_name_rm_-rf.normalized.xlsx", "hidden_name_rm_-rf.table-1.csv",
                                "members-2.normalized.xlsx", "members-2.table-1.csv",
                                "members.normalized.xlsx", "members.table-1.csv"]


def test_unmapped_columns_can_be_dropped(engine, config_package, tmp_path):
    config_package({"columns.py": "from ade_config.base import *\nSETTINGS = {'unmapped_columns': 'drop'}\n",
                    "base.py": open(os.path.join(TEMPLATE_SRC, "ade_config", "columns.py")).read()},
                   base_template=True)
    result = engine(MEMBERS)
    assert result.csv("members.table-1.csv")[0] == ["member_id", "first_name", "last_name", "email", "phone",
                                                    "joined_on"]


def test_the_workbook_output_has_typed_cells_and_an_issues_sheet(engine, tmp_path):
    path = write(tmp_path / "r.csv", "ID,First,Last,Email,Joined\n1,Ada,Lovelace,nope,2019-04-02\n"
                                     "2,Bob,Smith <&> Co,bob@x.org,2019-13-01\n")
    result = engine(path)
    book = openpyxl.load_workbook(os.path.join(result.out_dir, "r.normalized.xlsx"))
    table = book["Table 1"]
    assert [c.value for c in table[1]] == ["member_id", "first_name", "last_name", "email", "phone", "joined_on"]
    assert table["C3"].value == "Smith <&> Co", "markup characters are text"
    assert table["F2"].is_date and table["F3"].value == "2019-13-01"
    issues = [r for r in book["Issues"].iter_rows(min_row=2, values_only=True)]
    assert [(r[2], r[4], r[8]) for r in issues] == [(2, "D2", "invalid_email"), (3, "E3", "invalid_date")]


def test_issue_events_are_capped_and_counted(engine, config_package, tmp_path):
    config_package({"columns.py": """
        FIELDS = [{"name": "id", "type": "id"}, {"name": "email", "type": "email", "required": True}]
        SETTINGS = {"max_issue_events": 5}
    """})
    path = write(tmp_path / "r.csv", "ID,Email\n" + "".join(f"{n},not-an-email\n" for n in range(40)))
    result = engine(path)
    assert result.code == 0
    assert len(result.issues) == 5
    counts = result.one("run.validation.summary")["summary"]["issues"]
    assert counts["total"] == 40 and counts["events_emitted"] == 5 and counts["events_not_emitted"] == 35


def test_large_inputs_report_progress(engine, tmp_path):
    path = write(tmp_path / "big.csv", "ID,First,Last\n" + "".join(f"{n},Ada,Lovelace\n" for n in range(60000)))
    result = engine(path)
    percents = [p["percent"] for p in result.of("run.progress")]
    assert len(percents) >= 5 and percents == sorted(percents) and percents[-1] > 90
    assert result.one("run.table.summary")["rows"] == 60000


def test_events_are_json_lines_with_type_and_payload(engine, tmp_path):
    path = write(tmp_path / "r.csv", 'ID,First,Last\n1,"Ada ""the"" \\ first",Lovelace\u2028\n')
    result = engine(path)
    assert all(set(e) == {"type", "payload"} for e in result.events)
    assert [e["type"] for e in result.events][:2] == ["run.phase.started", "run.phase.started"]
    assert result.events[-1]["type"] == "run.validation.summary"


def _imports(args) -> tuple[int, str, set]:
    """Modules a command imports beyond what this interpreter imports at start-up
    (a test environment may add start-up imports of its own)."""
    _, _, baseline = run_process(["-X", "importtime", "-c", "pass"])
    code, out, err = run_process(["-X", "importtime", *args])
    names = [{line.split("|")[-1].strip() for line in text.splitlines() if "|" in line}
             for text in (baseline, err)]
    return code, out, names[1] - names[0]


def test_version_is_fast_because_it_imports_nothing(tmp_path):
    code, out, imported = _imports(["-m", "ade_engine", "--version"])
    assert code == 0 and out == "ade-engine 0.2.0\n"
    assert "ade_engine" in imported
    for heavy in ("argparse", "re", "json", "csv", "openpyxl", "ade_engine.cli", "ade_config"):
        assert heavy not in imported, f"--version imported {heavy}"


def test_a_small_csv_run_does_not_import_heavy_modules(tmp_path):
    code, out, imported = _imports(["-m", "ade_engine", "run", "--input", MEMBERS,
                                    "--output-dir", str(tmp_path / "out")])
    assert code == 0 and "ade_engine.runner" in imported
    for heavy in ("argparse", "re", "json", "zipfile", "openpyxl", "tempfile", "typing", "dataclasses"):
        assert heavy not in imported, f"a CSV run imported {heavy}"


def test_usage_errors_exit_1_with_a_run_error(tmp_path):
    events = tmp_path / "events"
    fd = os.open(events, os.O_WRONLY | os.O_CREAT)
    code, out, err = run_process(["-m", "ade_engine", "run", "--input", MEMBERS],
                                 env_extra={"ADE_EVENTS_FD": str(fd)}, pass_fds=(fd,))
    os.close(fd)
    assert code == 1 and "--output-dir is required" in err
    events_of = _events_of(events)
    assert events_of[-1]["payload"] == {"code": "internal_error", "message": "--output-dir is required"}
    code, _, err = run_process(["-m", "ade_engine", "frobnicate"])
    assert code == 1 and "unknown command" in err


def _events_of(path) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def _with_events(tmp_path, args, limit=None, config_src=TEMPLATE_SRC):
    events = tmp_path / "events.jsonl"
    fd = os.open(events, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)

    def limits():
        if limit:
            resource.setrlimit(*limit)

    try:
        code, out, err = run_process(["-m", "ade_engine", *args], env_extra={"ADE_EVENTS_FD": str(fd)},
                                     preexec_fn=limits, config_src=config_src, pass_fds=(fd,))
    finally:
        os.close(fd)
    return code, err, _events_of(events)


def test_running_out_of_memory_is_memory_limit(tmp_path):
    package = tmp_path / "cfg" / "ade_config"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("FIELDS = [{'name': 'id'}]\n\ndef on_run_start(run):\n"
                                         "    run.state['hog'] = bytearray(3 << 30)\n")
    code, err, events = _with_events(tmp_path, ["run", "--input", MEMBERS, "--output-dir", str(tmp_path / "o")],
                                     limit=(resource.RLIMIT_AS, (1 << 30, 1 << 30)),
                                     config_src=str(tmp_path / "cfg"))
    assert code == 1
    assert events[-1] == {"type": "run.error", "payload": {
        "code": "memory_limit", "message": "the run ran out of memory (its address-space limit)"}}
    assert "ran out of memory" in err


def test_a_file_size_limit_is_file_size_limit(tmp_path):
    big = write(tmp_path / "big.csv", "ID,First,Last\n" + "".join(f"{n},Ada,Lovelace\n" for n in range(20000)))
    code, err, events = _with_events(tmp_path, ["run", "--input", big, "--output-dir", str(tmp_path / "o")],
                                     limit=(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024)))
    assert code == 1, err
    assert events[-1]["type"] == "run.error" and events[-1]["payload"]["code"] == "file_size_limit"
    assert os.listdir(tmp_path / "o") == [], "partial outputs are removed"


def test_config_init_writes_a_template_that_validates(tmp_path):
    target = tmp_path / "my-config"
    code, out, err = run_process(["-m", "ade_engine", "config", "init", str(target)])
    assert code == 0, err
    assert (target / "pyproject.toml").is_file() and (target / "src" / "ade_config" / "__init__.py").is_file()
    code, out, err = run_process(["-m", "ade_engine", "config", "validate", str(target)])
    assert code == 0, err
    assert "field member_id (id, required, unique)" in out and "hooks: on_run_start, on_table_validated" in out
    code, _, err = run_process(["-m", "ade_engine", "config", "init", str(target)])
    assert code == 1 and "not an empty directory" in err


def test_config_validate_reports_broken_rules(tmp_path):
    target = tmp_path / "c"
    run_process(["-m", "ade_engine", "config", "init", str(target)])
    hooks = target / "src" / "ade_config" / "hooks.py"
    hooks.write_text(hooks.read_text() + "\n\ndef on_run_started(run):\n    pass\n")
    code, _, err = run_process(["-m", "ade_engine", "config", "validate", str(target)])
    assert code == 1 and "unknown hook on_run_started (did you mean on_run_start?)" in err
    hooks.write_text("")
    rows = target / "src" / "ade_config" / "rows.py"
    rows.write_text("def broken(row):\n    return row.cells[0]\n\nROW_DETECTORS = [broken]\n")
    code, _, err = run_process(["-m", "ade_engine", "config", "validate", str(target)])
    assert code == 1 and "row detector broken" in err and "rows.py, line 2" in err and "AttributeError" in err
