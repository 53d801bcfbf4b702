"""Whole numbers written in text: settings, cron fields, version directories, ids.

`str.isdigit` also accepts digits such as "²" that `int` refuses, so a check
built on it lets a bare ValueError through; these checks accept exactly what
`int` parses as a non-negative number written with ASCII digits.
"""


def is_whole_number(text: str) -> bool:
    """True for "0", "42", "007"; False for "", "-1", "1.5", " 1", "²"."""
    return text.isascii() and text.isdigit()
