"""HiGHS as every market design uses it: silent, and never without a time limit.

A solve that reaches ``TIME_LIMIT_S`` ends with HiGHS status "Time limit reached": the clearing is then a
failed clearing (NaN prices, its status recorded), and the study goes on (``market.on_failure``).
"""

from __future__ import annotations

import ctypes
import os
import sys

import highspy

TIME_LIMIT_S = 60.0
"""Wall-clock limit of one HiGHS solve [s]."""

_banner_silenced = False


def silence_banner() -> None:
    """Swallow the banner HiGHS prints to stdout (C level) when the process builds its first instance."""
    global _banner_silenced
    if _banner_silenced:
        return
    _banner_silenced = True
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all: nothing to keep clean
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
            ctypes.CDLL(None).fflush(None)
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def new_highs() -> highspy.Highs:
    """A HiGHS instance that prints nothing and stops at ``TIME_LIMIT_S``."""
    silence_banner()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", TIME_LIMIT_S)
    return h
