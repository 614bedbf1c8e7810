"""Argument checks shared by the library, each written once."""

import numbers


def _is_integer(value):
    # `bool` is an `int` in Python but never a count; NumPy integers are.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_integer(name, value, allow_none=False):
    """Returns `value` as an `int` if it is a positive integer.

    Accepts Python and NumPy integers; refuses booleans, floats and other
    types with a `ValueError` naming the argument and the value received.
    With `allow_none`, None is passed through.
    """
    if allow_none and value is None:
        return None
    if not _is_integer(value) or value < 1:
        expected = "a positive integer"
        if allow_none:
            expected += " or None"
        raise ValueError(
            f"`{name}` must be {expected}. Received: {name}={value!r}"
        )
    return int(value)


def check_non_negative_integer(name, value, allow_none=False):
    """As `check_positive_integer`, for integers >= 0."""
    if allow_none and value is None:
        return None
    if not _is_integer(value) or value < 0:
        expected = (
            "None or a non-negative integer"
            if allow_none
            else "a non-negative integer"
        )
        raise ValueError(
            f"`{name}` must be {expected}. Received: {name}={value!r}"
        )
    return int(value)


def check_choice(name, value, choices):
    """Raises a `ValueError` unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {choices}. Received: {name}={value!r}"
        )
    return value
