"""argparse value parsers with clear messages, shared by the command lines of experiments/ and
benchmarks/."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_at_least(flag: str, minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes an integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{flag} must be at least {minimum}, got {v}")
        return v

    return parse


def positive_int(flag: str) -> Callable[[str], int]:
    return int_at_least(flag, 1)


def floats(flag: str) -> Callable[[str], tuple[float, ...]]:
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} takes a comma-separated list of numbers, e.g. 0.1,0.5,1; got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"{flag} needs at least one value")
        return values

    return parse


def names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def positive_float(flag: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a number, got {text!r}") from None
        if not (math.isfinite(v) and v > 0):
            raise argparse.ArgumentTypeError(f"{flag} must be a positive finite number, got {text}")
        return v

    return parse
