"""The project's error tree: a user sees the message and an exit code, never a traceback."""

from __future__ import annotations


class CosimError(Exception):
    """Base of every error the platform raises on purpose."""

    exit_code = 1


class ScenarioError(CosimError):
    """The scenario (YAML) is invalid; ``problems`` lists ``(dotted.path, message)`` pairs."""

    exit_code = 2

    def __init__(self, problems: list[tuple[str, str]], source: str = "scenario") -> None:
        self.problems = problems
        self.source = source
        lines = [f"{source}: {len(problems)} problem(s)"]
        lines += [f"  {path}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


class ModelNotConverged(CosimError):
    """A numerical model failed to converge where no fallback exists."""


class ResultsError(CosimError):
    """A results file is missing, incomplete or not of this platform."""
