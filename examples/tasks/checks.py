"""The tasks' argument check."""

import numbers


def check_positive_integer(name, value, allow_none=False):
    """Returns `value` as an `int`, or raises a `ValueError` naming it."""
    if allow_none and value is None:
        return None
    integer = isinstance(value, numbers.Integral) and not isinstance(
        value, bool
    )
    if not integer or value < 1:
        expected = "a positive integer" + (" or None" if allow_none else "")
        raise ValueError(
            f"`{name}` must be {expected}. Received: {name}={value!r}"
        )
    return int(value)
