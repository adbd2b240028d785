"""The cases of the latency matrix: batch sizes x (seq_in, seq_out) pairs, as the guide's run.sh builds them."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError

DEFAULT_BATCH_SIZES = (1, 4, 8, 16, 32)
DEFAULT_RANGE = (5, 11)  # exponents LO..HI-1: lengths 32..1024, 6 x 6 = 36 pairs


@dataclass(frozen=True)
class Case:
    batch: int
    seq_in: int
    seq_out: int

    @property
    def name(self) -> str:
        return f"b{self.batch}_in{self.seq_in}_out{self.seq_out}"


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        vals = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UserError(f"{what} {text!r} must be comma-separated integers, e.g. 1,4,8") from None
    if not vals or any(v < 1 for v in vals):
        raise UserError(f"{what} {text!r} must list positive integers, e.g. 1,4,8")
    return vals


def parse_range(text: str, what: str) -> tuple[int, int]:
    """'5,11' -> exponents 5..10: lengths 32..1024 (the guide's power-of-two grid)."""
    vals = parse_int_list(text, what)
    if len(vals) != 2 or vals[0] >= vals[1] or vals[1] > 20:
        raise UserError(f"{what} {text!r} must be two exponents LO,HI with LO < HI <= 20 (lengths 2**LO .. 2**(HI-1)), "
                        "e.g. 5,11 for 32..1024")
    return vals[0], vals[1]


def parse_pairs(text: str) -> list[tuple[int, int]]:
    """'256:64,512:512' -> [(256, 64), (512, 512)]."""
    out = []
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        a, sep, b = item.partition(":")
        try:
            pair = (int(a), int(b))
        except ValueError:
            pair = None
        if not sep or pair is None or min(pair) < 1:
            raise UserError(f"--pairs item {item!r} must be SEQ_IN:SEQ_OUT with positive integers, e.g. 256:64")
        out.append(pair)
    if not out:
        raise UserError("--pairs is empty: give SEQ_IN:SEQ_OUT items, e.g. 256:64,512:512")
    return out


def grid_pairs(seq_in_range: tuple[int, int], seq_out_range: tuple[int, int]) -> list[tuple[int, int]]:
    return [(1 << i, 1 << o) for i in range(*seq_in_range) for o in range(*seq_out_range)]


def build_cases(batch_sizes: list[int], pairs: list[tuple[int, int]]) -> list[Case]:
    """Every batch size with every pair, ordered by batch then pair (the guide's loop order)."""
    return [Case(b, i, o) for b in batch_sizes for i, o in pairs]
