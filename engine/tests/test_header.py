"""Tests of normalization, field parsing and header detection."""

import unittest

from ade_engine.config import parse_fields
from ade_engine.header import detect_header, normalize

FIELDS = parse_fields([
    {"name": "member_id", "label": "Member ID", "synonyms": ["member #", "id"], "required": True},
    {"name": "first_name", "label": "First name", "synonyms": ["given name"]},
    {"name": "email", "label": "Email", "synonyms": ["e-mail address"]},
])


class NormalizeTest(unittest.TestCase):
    def test_lowercases_strips_and_collapses(self):
        self.assertEqual(normalize("  E-mail   Address "), "e mail address")
        self.assertEqual(normalize("Member #"), "member")
        self.assertEqual(normalize("first_name"), "first name")
        self.assertEqual(normalize("Prénom"), "prénom")
        self.assertEqual(normalize("---"), "")


class ParseFieldsTest(unittest.TestCase):
    def test_name_and_label_are_synonyms(self):
        member = FIELDS[0]
        self.assertEqual(member.synonyms, ("member id", "member", "id"))
        self.assertTrue(member.required)
        self.assertFalse(FIELDS[1].required)

    def test_rejects_bad_definitions(self):
        for bad in ([], [{"label": "x"}], [{"name": "a"}, {"name": "a"}], [{"name": "a", "synonyms": "b"}]):
            with self.assertRaises(ValueError):
                parse_fields(bad)


class DetectHeaderTest(unittest.TestCase):
    def test_skips_title_rows(self):
        rows = [["Club roster"], ["exported today"], ["Member #", "Given Name", "Notes"], ["1", "Ada", ""]]
        self.assertEqual(detect_header(rows, FIELDS), 2)

    def test_highest_count_wins(self):
        rows = [["id", "x"], ["ID", "First Name", "E-mail address"], ["1", "Ada", "a@b"]]
        self.assertEqual(detect_header(rows, FIELDS), 1)

    def test_ties_go_to_earliest(self):
        rows = [["note"], ["id", "email"], ["member id", "first name"]]
        self.assertEqual(detect_header(rows, FIELDS), 1)

    def test_no_match_returns_none(self):
        self.assertIsNone(detect_header([["a", "b"], ["1", "2"]], FIELDS))
        self.assertIsNone(detect_header([], FIELDS))

    def test_only_first_twenty_rows_are_scanned(self):
        rows = [["filler"]] * 20 + [["member id", "email"]]
        self.assertIsNone(detect_header(rows, FIELDS))
        self.assertEqual(detect_header(rows[1:], FIELDS), 19)


if __name__ == "__main__":
    unittest.main()
