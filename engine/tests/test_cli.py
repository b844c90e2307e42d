"""End-to-end tests of `python -m ade_engine` in a subprocess, with events on a pipe."""

import csv
import tempfile
import unittest
from pathlib import Path

from ade_engine import __version__

from .helpers import SAMPLE, of_type, run_engine


class CliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        self.out = self.dir / "out"

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text, encoding="utf-8")
        return path

    def test_version(self):
        code, out, _, _ = run_engine("--version", events=False)
        self.assertEqual((code, out.strip()), (0, f"ade-engine {__version__}"))

    def test_sample_run_writes_output_and_events(self):
        code, out, err, events = run_engine("run", "--input", str(SAMPLE), "--output-dir", str(self.out))
        self.assertEqual(code, 0, err)
        self.assertEqual(err, "")
        self.assertIn("header found on row 3", out)
        self.assertIn("wrote members.normalized.csv (12 rows)", out)
        self.assertEqual([p["phase"] for p in of_type(events, "run.phase.started")],
                         ["load_config", "read_input", "detect_header", "map_columns", "write_output"])
        self.assertEqual(of_type(events, "run.progress"), [{"input": "members.csv", "rows": 17}])
        [summary] = of_type(events, "run.table.summary")
        self.assertEqual(summary["header_row"], 3)
        self.assertEqual(summary["rows"], 12)
        self.assertEqual(summary["output"], "members.normalized.csv")
        self.assertEqual(summary["unmapped_headers"], ["Notes"])
        self.assertEqual(summary["missing_fields"], [])
        self.assertEqual([c["header"] for c in summary["columns"]],
                         ["Member #", "First Name", "SURNAME", "E-mail Address", "Phone", "Date Joined"])
        self.assertEqual(of_type(events, "run.validation.summary"), [{"issues": 0, "errors": 0, "warnings": 0}])
        self.assertEqual(events[-1]["type"], "run.validation.summary")

        self.assertEqual(sorted(p.name for p in self.out.iterdir()), ["members.normalized.csv"])
        with open(self.out / "members.normalized.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        self.assertEqual(rows[0], ["member_id", "first_name", "last_name", "email", "phone", "joined_on"])
        self.assertEqual(rows[1], ["1001", "Ada", "Lovelace", "ada@example.org", "555-0101", "2019-04-02"])
        self.assertEqual(len(rows), 13)

    def test_dry_run_and_validate_only_write_nothing(self):
        for flag in ("--dry-run", "--validate-only"):
            code, out, err, events = run_engine("run", "--input", str(SAMPLE), "--output-dir",
                                                str(self.out), flag)
            self.assertEqual(code, 0, err)
            self.assertFalse(self.out.exists())
            self.assertNotIn("write_output", [p["phase"] for p in of_type(events, "run.phase.started")])
            self.assertIsNone(of_type(events, "run.table.summary")[0]["output"])

    def test_runs_without_events_fd(self):
        code, out, err, _ = run_engine("run", "--input", str(SAMPLE), "--output-dir", str(self.out),
                                       "--input-sheet", "Sheet1", events=False)
        self.assertEqual(code, 0, err)
        self.assertIn("--input-sheet is ignored", out)

    def test_missing_required_field_fails(self):
        path = self.write("people.csv", "First Name,Email\nAda,ada@x\n")
        code, out, err, events = run_engine("run", "--input", str(path), "--output-dir", str(self.out))
        self.assertEqual(code, 1)
        self.assertIn("required field member_id", err)
        issues = [p for p in of_type(events, "run.validation.issue") if p["severity"] == "error"]
        self.assertEqual(issues, [
            {"severity": "error", "code": "missing_required_field", "field": "member_id", "input": "people.csv"},
            {"severity": "error", "code": "missing_required_field", "field": "last_name", "input": "people.csv"},
        ])
        self.assertEqual(of_type(events, "run.validation.summary"), [{"issues": 4, "errors": 2, "warnings": 2}])
        self.assertIsNone(of_type(events, "run.table.summary")[0]["output"])
        self.assertFalse(self.out.exists())

    def test_unsupported_extension_fails(self):
        path = self.write("members.xlsx", "not really a workbook")
        code, out, err, events = run_engine("run", "--input", str(path), "--output-dir", str(self.out))
        self.assertEqual(code, 1)
        self.assertIn("unsupported input type '.xlsx'", err)
        [error] = of_type(events, "run.error")
        self.assertEqual(error["input"], "members.xlsx")
        self.assertIn("unsupported", error["message"])

    def test_no_header_row_fails(self):
        path = self.write("junk.csv", "a,b,c\n1,2,3\n")
        code, out, err, events = run_engine("run", "--input", str(path), "--output-dir", str(self.out))
        self.assertEqual(code, 1)
        self.assertIn("no header row found", err)
        self.assertEqual(of_type(events, "run.error")[0]["input"], "junk.csv")

    def test_broken_config_fails_with_traceback(self):
        config = self.dir / "config"
        (config / "ade_config").mkdir(parents=True)
        (config / "ade_config" / "__init__.py").write_text("raise RuntimeError('boom')\n")
        code, out, err, events = run_engine("run", "--input", str(SAMPLE), "--output-dir", str(self.out),
                                            config_src=config)
        self.assertEqual(code, 1)
        self.assertIn("Traceback", err)
        self.assertIn("RuntimeError: boom", err)
        self.assertIsNone(of_type(events, "run.error")[0]["input"])

    def test_usage_error_exits_1(self):
        code, _, err, _ = run_engine("run", "--output-dir", str(self.out), events=False)
        self.assertEqual(code, 1)
        self.assertIn("--input", err)


if __name__ == "__main__":
    unittest.main()
