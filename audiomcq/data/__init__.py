"""The MCQ record, its validation, streaming I/O with quarantine, and data allocation."""

from audiomcq.data.allocation import (
    PARADIGMS,
    Allocation,
    allocate,
    check_no_leakage,
    find_leakage,
    position_balanced,
    shuffle_options,
)
from audiomcq.data.io import LoadReport, RecordReader, read_records, write_records
from audiomcq.data.record import AC_KEY, MCQRecord, Problem, colliding_choices, normalize_choice, validate

__all__ = [
    "AC_KEY",
    "PARADIGMS",
    "Allocation",
    "LoadReport",
    "MCQRecord",
    "Problem",
    "RecordReader",
    "allocate",
    "check_no_leakage",
    "colliding_choices",
    "find_leakage",
    "normalize_choice",
    "position_balanced",
    "read_records",
    "shuffle_options",
    "validate",
    "write_records",
]
