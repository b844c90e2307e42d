"""Tests of column mapping and row projection."""

import unittest

from ade_engine.config import parse_fields
from ade_engine.mapping import data_rows, map_columns, project

FIELDS = parse_fields([
    {"name": "member_id", "synonyms": ["member #", "id"], "required": True},
    {"name": "last_name", "label": "Last name", "synonyms": ["surname"], "required": True},
    {"name": "email", "synonyms": ["e-mail", "e-mail address"]},
    {"name": "phone"},
])


class MapColumnsTest(unittest.TestCase):
    def test_maps_by_normalized_synonym(self):
        cmap = map_columns(["Notes", "SURNAME ", "Member #", "E-Mail Address", ""], FIELDS)
        self.assertEqual(cmap.columns, [
            {"field": "member_id", "header": "Member #", "index": 2},
            {"field": "last_name", "header": "SURNAME", "index": 1},
            {"field": "email", "header": "E-Mail Address", "index": 3},
        ])
        self.assertEqual(cmap.unmapped_headers, ["Notes"])
        self.assertEqual([f.name for f in cmap.missing_fields], ["phone"])

    def test_first_matching_column_wins(self):
        cmap = map_columns(["ID", "Member ID", "email", "E-mail"], FIELDS)
        self.assertEqual(cmap.indexes(), {"member_id": 0, "email": 2})
        self.assertEqual(cmap.unmapped_headers, ["Member ID", "E-mail"])

    def test_missing_required_fields_are_reported(self):
        cmap = map_columns(["email", "phone"], FIELDS)
        self.assertEqual([f.name for f in cmap.missing_fields], ["member_id", "last_name"])


class RowsTest(unittest.TestCase):
    def test_data_rows_strip_and_skip_blanks(self):
        rows = [["title"], ["id", "surname"], [" 1 ", " Ada"], ["", "  "], [], ["2", "Turing "]]
        self.assertEqual(list(data_rows(rows, 1)), [["1", "Ada"], ["2", "Turing"]])

    def test_project_fills_unmapped_and_short_rows(self):
        indexes = {"member_id": 0, "last_name": 1, "email": 5}
        self.assertEqual(project(["7", "Hopper"], FIELDS, indexes), ["7", "Hopper", "", ""])


if __name__ == "__main__":
    unittest.main()
