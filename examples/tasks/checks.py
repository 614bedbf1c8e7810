"""The tasks' argument checks."""

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


def check_split(split, validation_fraction):
    """Raises a `ValueError` naming a bad `split` or `validation_fraction`."""
    if split not in ("train", "validation"):
        raise ValueError(
            "`split` must be 'train' or 'validation'. "
            f"Received: split={split!r}"
        )
    if not 0 < validation_fraction < 1:
        raise ValueError(
            "`validation_fraction` must be between 0 and 1. "
            f"Received: validation_fraction={validation_fraction!r}"
        )
