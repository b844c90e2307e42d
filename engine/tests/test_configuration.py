"""The ade_config API: fields, detectors, transforms, validators, hooks and their errors."""

import os

from conftest import SAMPLES, write

ROSTER = "ID,First,Last,Email\n1,ada,lovelace,ada@x.org\n2,grace,hopper,\n"


def test_hooks_run_in_order_with_their_contexts(engine, config_package, tmp_path):
    config_package({"columns.py": """
        FIELDS = [{"name": "member_id", "type": "id", "synonyms": ["id"]},
                  {"name": "first_name", "synonyms": ["first"]}, {"name": "email", "type": "email"}]
    """, "hooks.py": """
        def on_run_start(run):
            run.state["calls"] = ["run_start"]
            run.log(f"inputs: {len(run.inputs)}, dry run: {run.dry_run}")

        def on_sheet_start(run, sheet):
            run.state["calls"].append(f"sheet {sheet.input} {sheet.name}")

        def on_table_mapped(run, table):
            run.state["calls"].append(f"mapped {sorted(k for k, v in table.mapping.items() if v is not None)}")

        def on_table_validated(run, table):
            run.state["calls"].append(f"validated {table.rows} rows, {table.issues['errors']} errors")

        def on_run_end(run, summary):
            run.log("calls: " + " | ".join(run.state["calls"]) + f" | rows {summary['rows']}")
    """})
    result = engine(write(tmp_path / "r.csv", ROSTER))
    assert result.code == 0, result.stderr
    assert "inputs: 1, dry run: False" in result.stdout
    assert ("calls: run_start | sheet r.csv None | mapped ['email', 'first_name', 'member_id'] "
            "| validated 2 rows, 0 errors | rows 2") in result.stdout


def test_on_table_mapped_can_remap_and_on_sheet_start_can_skip(engine, config_package, tmp_path):
    config_package({"columns.py": """
        FIELDS = [{"name": "member_id", "type": "id", "synonyms": ["id"]},
                  {"name": "first_name", "synonyms": ["first"]}, {"name": "nickname"}]
    """, "hooks.py": """
        def on_sheet_start(run, sheet):
            return sheet.name != "Skip me"

        def on_table_mapped(run, table):
            # The "Last" column holds nicknames in this export.
            table.mapping["nickname"] = next(c.index for c in table.columns if c.header == "Last")
    """})
    from conftest import workbook

    rows = [["ID", "First", "Last"], [1, "Ada", "Countess"]]
    result = engine(workbook(tmp_path / "b.xlsx", {"Skip me": rows, "Keep": rows}))
    assert result.code == 0, result.stderr
    assert [t["sheet"] for t in result.tables] == ["Keep"]
    assert result.mapping()["nickname"] == "Last"
    assert result.csv("b.table-1.csv")[1] == ["1", "Ada", "Countess"]


def test_a_failing_hook_names_its_file_and_line(engine, config_package, tmp_path):
    package = config_package({"columns.py": 'FIELDS = [{"name": "first_name", "synonyms": ["first"]}]\n',
                              "hooks.py": """
        def on_table_validated(run, table):
            totals = {}
            return totals["missing"]
    """})
    result = engine(write(tmp_path / "r.csv", ROSTER))
    assert result.code == 1
    error = result.one("run.error")
    assert error["code"] == "config_error"
    assert error["file"] == os.path.join(package, "hooks.py") and error["line"] == 4
    assert "hook on_table_validated failed" in error["message"] and "KeyError: 'missing'" in error["message"]
    assert "Traceback" in result.stderr and "hooks.py" in result.stderr
    assert result.outputs() == [], "a failed run leaves no outputs, not even partial ones"


def test_an_exception_while_importing_the_configuration(engine, config_package, tmp_path):
    package = config_package({"columns.py": "FIELDS = [{'name': 'a'}]\nLIMIT = int('ten')\n"})
    result = engine(write(tmp_path / "r.csv", ROSTER))
    assert result.code == 1
    error = result.one("run.error")
    assert error["code"] == "config_error" and error["line"] == 2
    assert error["file"] == os.path.join(package, "columns.py")
    assert "ValueError: invalid literal for int()" in error["message"]


def test_broken_fields_are_explained(engine, config_package, tmp_path):
    cases = [
        ("FIELDS = [{'name': 'a', 'synonym': ['x']}]", "unknown key 'synonym'"),
        ("FIELDS = [{'name': 'a', 'type': 'datetime'}]", "unknown type 'datetime'"),
        ("FIELDS = [{'name': 'a'}, {'name': 'a'}]", "two fields named 'a'"),
        ("FIELDS = []", "FIELDS is empty"),
        ("FIELDS = [{'name': 'a', 'transforms': ['shout']}]", "unknown transform 'shout'"),
        ("FIELDS = [{'name': 'a'}]\nSETTINGS = {'unmapped_columns': 'hide'}", "must be one of keep, drop"),
        ("NAMES = []", "defines no FIELDS"),
    ]
    for source, words in cases:
        package = config_package({"columns.py": source})
        result = engine(write(tmp_path / "r.csv", ROSTER))
        error = result.one("run.error")
        assert result.code == 1 and error["code"] == "config_error", (source, error)
        assert words in error["message"], (source, error["message"])
        assert error["file"] and error["file"].startswith(os.path.dirname(package)), error
        import shutil

        shutil.rmtree(os.path.dirname(os.path.dirname(package)))


def test_transforms_detectors_and_validators(engine, config_package, tmp_path):
    config_package({"columns.py": """
        def initials(value):
            if len(value) < 2:
                raise ValueError("too short to be a name")
            return value[0].upper() + "."

        FIELDS = [
            {"name": "code", "type": "id", "unique": True, "transforms": ["upper"]},
            {"name": "name", "transforms": ["title", initials]},
            {"name": "score", "type": "integer"},
            {"name": "active", "type": "boolean"},
        ]
        SETTINGS = {"unmapped_columns": "drop", "outputs": ["csv"]}

        def scores(column):
            # This export calls its score column "Pts".
            return {"score": 0.9} if column.header == "Pts" else None

        COLUMN_DETECTORS = [scores]
    """, "validators.py": """
        def plausible(record, row):
            if isinstance(record["score"], int) and record["score"] > 100:
                yield {"field": "score", "message": f"score {record['score']} on row {row.row} is above 100",
                       "code": "too_high"}
            if record["active"] is False:
                yield "inactive member"

        VALIDATORS = [plausible]
    """, "rows.py": """
        def legend(row):
            return "skip" if row.values and row.values[0] == "legend" else None

        ROW_DETECTORS = [legend]
    """})
    path = write(tmp_path / "s.csv", "Code,Name,Pts,Active,Extra\nab1,ada,12,yes,x\nlegend,x,x,x,x\n"
                                     "AB1,b,101,no,y\nc3,cy,1.5,maybe,z\n")
    result = engine(path)
    assert result.code == 0, result.stderr
    assert result.mapping() == {"code": "Code", "name": "Name", "score": "Pts", "active": "Active"}
    assert result.outputs() == ["s.table-1.csv"], "outputs: csv only"
    assert result.csv("s.table-1.csv") == [["code", "name", "score", "active"], ["AB1", "A.", "12", "TRUE"],
                                           ["AB1", "b", "101", "FALSE"], ["C3", "C.", "1.5", "maybe"]]
    found = sorted((i["row"], i["code"], i["field"], i["severity"]) for i in result.issues)
    assert found == [(4, "duplicate_value", "code", "error"), (4, "invalid_string", "name", "error"),
                     (4, "too_high", "score", "error"), (4, "validation", None, "error"),
                     (5, "invalid_boolean", "active", "error"), (5, "invalid_integer", "score", "error")]
    too_short = next(i for i in result.issues if i["code"] == "invalid_string")
    assert "too short to be a name" in too_short["message"] and too_short["cell"] == "B4"
    assert result.tables[0]["skipped_rows"]["notes"] == 1, "the row detector skipped the legend"


def test_a_detector_returning_nonsense_is_a_config_error(engine, config_package, tmp_path):
    config_package({"columns.py": """
        FIELDS = [{"name": "a"}, {"name": "b"}]
        def bad(column):
            return ["a"]
        COLUMN_DETECTORS = [bad]
    """})
    result = engine(write(tmp_path / "r.csv", "a,b\n1,2\n"))
    error = result.one("run.error")
    assert error["code"] == "config_error" and "column detector bad" in error["message"]


def test_the_template_validators_and_hooks_run_on_the_sample(engine):
    result = engine(os.path.join(SAMPLES, "members.csv"))
    assert "roster table 1: 12 members, 0 errors" in result.stdout
