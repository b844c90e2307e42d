"""Writes members-with-notes.xlsx, the workbook the end-to-end test uploads.

A notes sheet comes first; the data sheet has a title, merged group
headings over the real header, typed cells (numbers, a date, a date serial),
an invalid email, an impossible date, a blank row and a totals row.
Run with a Python that has openpyxl: python make_workbook.py
"""

import datetime
import os

import openpyxl

book = openpyxl.Workbook()
notes = book.active
notes.title = "Notes"
for line in ["About this export", "Exported from the membership desk on 2024-03-01.", None,
             "Member numbers are unique.", "Dates are when the member joined."]:
    notes.append([line])

members = book.create_sheet("Members")
members.append(["Riverside Rowing Club - roster 2024"])
members.append([])
members.append(["Member", None, None, "Contact", None, None])
members.append(["Member No.", "Given name", "Family Name", "E-mail", "Mobile", "Member Since"])
members.merge_cells("A3:C3")
members.merge_cells("D3:E3")
members.append([1001, "ada", "LOVELACE", "Ada@Example.org", "555 0101", datetime.datetime(2019, 4, 2)])
members.append([1002, "Grace", "Hopper", "grace-at-example.org", 5550102, 43600])
members.append([])
members.append([1003, "Alan", "Turing", "alan@example.org", "(555) 010-3333", "2023-02-30"])
members.append([1004, "Katherine", "Johnson", "kj@example.org", None, "31/12/2020"])
members.append(["Total", 4])

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "members-with-notes.xlsx")
book.save(path)
print(f"wrote {path}")
