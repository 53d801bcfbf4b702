"""Tests for bandit_core.whole_numbers: exactly what `int` parses as a non-negative number."""

import pytest

from bandit_core.whole_numbers import is_whole_number


@pytest.mark.parametrize("text", ["0", "7", "42", "007", "1682"])
def test_ascii_digits_are_whole_numbers(text):
    assert is_whole_number(text) and int(text) >= 0


@pytest.mark.parametrize("text", ["", "-1", "+1", "1.5", " 1", "1 ", "²", "١٢", "1e3", "0x1"])
def test_anything_else_is_not(text):
    assert not is_whole_number(text)
