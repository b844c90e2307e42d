"""Tests of input decoding and delimiter sniffing."""

import tempfile
import unittest
from pathlib import Path

from ade_engine.errors import EngineError
from ade_engine.reader import read_table, sniff_delimiter


class ReaderTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return path

    def test_utf8_bom_is_removed(self):
        table = read_table(self.write("a.csv", "\ufeffid,name\n1,Zoë\n".encode("utf-8")))
        self.assertEqual(table.rows, [["id", "name"], ["1", "Zoë"]])
        self.assertEqual(table.encoding, "utf-8")

    def test_latin1_fallback(self):
        table = read_table(self.write("a.csv", "id,name\n1,Zoë\n".encode("latin-1")))
        self.assertEqual(table.rows[1], ["1", "Zoë"])
        self.assertEqual(table.encoding, "latin-1")

    def test_semicolon_with_title_lines(self):
        text = "Roster export\n\nid;name;email\n1;Ada;a@x\n2;Alan;b@x\n3;Grace;c@x\n"
        table = read_table(self.write("a.txt", text.encode()))
        self.assertEqual(table.delimiter, ";")
        self.assertEqual(table.rows[2], ["id", "name", "email"])

    def test_tab_separated(self):
        table = read_table(self.write("a.tsv", b"id\tname\n1\tAda\n"))
        self.assertEqual(table.rows, [["id", "name"], ["1", "Ada"]])

    def test_sniff_falls_back_to_default(self):
        self.assertEqual(sniff_delimiter("one cell\nanother\n"), ",")
        self.assertEqual(sniff_delimiter(""), ",")

    def test_unsupported_extension(self):
        with self.assertRaises(EngineError) as ctx:
            read_table(self.write("a.xlsx", b"PK"))
        self.assertIn("unsupported input type '.xlsx'", ctx.exception.message)
        self.assertEqual(ctx.exception.input_name, "a.xlsx")


if __name__ == "__main__":
    unittest.main()
