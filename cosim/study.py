"""Study files: a base scenario, factors over dotted scenario keys and seeds, expanded into validated runs.

A study is checked like a scenario: every problem of the study file is listed with its dotted path,
then every combination of factor values is applied to the base scenario and validated before anything
runs; an invalid combination is reported with the factor values that make it invalid.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from cosim.errors import ScenarioError
from cosim.scenario import Scenario, load_scenario, problems_of, validate_scenario

KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
RESERVED = {"seed": "use the study's seeds list", "output.path": "every run writes DIR/runs/<run_id>.h5"}
MAX_ID_CHARS = 150  # longer run ids are cut and end in a hash (file names stay well below 255 bytes)
MAX_LISTED = 4  # invalid combinations spelled out per problem


def _values(description: str) -> Any:
    return Field(default_factory=dict, description=description)


class Study(BaseModel):
    """A parameter study: the runs of a base scenario over factors and seeds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        description="Study name; names the default output directory results/<name>/",
        pattern=r"^[A-Za-z0-9_.-]+$",
    )
    base: Path | dict[str, Any] = Field(
        description="The base scenario: a YAML file (relative to the study file) or an inline mapping"
    )
    days: float | None = Field(None, description="Shorten (or lengthen) every run to this many days", gt=0)
    steps: int | None = Field(None, description="Run every run for this many steps instead", ge=1)
    set: dict[str, Any] = _values("Dotted scenario keys set in every run, e.g. {market.voll_per_mwh: 1000}")
    factors: dict[str, Annotated[list[Any], Field(min_length=1)]] = _values(
        "Full factorial: dotted scenario key -> list of values; every combination runs"
    )
    zip: dict[str, Annotated[list[Any], Field(min_length=1)]] = _values(
        "Dotted scenario keys whose lists vary together (same length), crossed with the factors"
    )
    seeds: list[Annotated[int, Field(ge=0)]] | None = Field(
        None,
        description="Every combination runs once per seed (default: the base scenario's seed)",
        min_length=1,
    )

    @field_validator("steps")
    @classmethod
    def _one_length(cls, steps: int | None, info: ValidationInfo) -> int | None:
        if steps is not None and info.data.get("days") is not None:
            raise ValueError("give days or steps, not both")
        return steps

    @field_validator("zip")
    @classmethod
    def _same_length(cls, zipped: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if len({len(v) for v in zipped.values()}) > 1:
            sizes = ", ".join(f"{k}: {len(v)}" for k, v in zipped.items())
            raise ValueError(f"zip lists vary together and need the same length ({sizes})")
        return zipped

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError("a seed is listed twice")
        return seeds

    @property
    def keys(self) -> list[str]:
        """The varied dotted keys: factors first, then the zipped ones."""
        return [*self.factors, *self.zip]


@dataclass(frozen=True)
class Run:
    """One run of a study: its id, factor values, seed, scenario and scenario hash."""

    run_id: str
    values: dict[str, Any]  # dotted key -> value, in Study.keys order
    seed: int
    scenario: Scenario  # validated, factors applied; seed and length applied by cosim.run
    hash: str


@dataclass
class Plan:
    """A validated study expanded into its runs."""

    study: Study
    source: str
    runs: list[Run] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        """The factor columns of the summary."""
        return self.study.keys


def _where(loc: tuple[int | str, ...]) -> str:
    """Dotted path of a study problem; dotted scenario keys are bracketed: ``factors[ledger.consensus]``."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) or "." in str(p) else (f".{p}" if out else str(p))
    return out or "(top level)"


def apply(data: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in a scenario mapping, creating missing sections; numeric parts index lists."""
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise KeyError(f"{'.'.join(parts[: i + 1])}: no list item {part}")
            node = node[int(part)]
            continue
        if not isinstance(node.get(part), dict | list):
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise KeyError(f"{key}: no list item {last}")
        node[int(last)] = copy.deepcopy(value)
    else:
        node[last] = copy.deepcopy(value)


def label(value: Any) -> str:
    """A value as it appears in a run id and in messages."""
    if isinstance(value, str | int | float | bool) or value is None:
        return str(value).lower() if isinstance(value, bool) or value is None else str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def run_id(values: dict[str, Any], seed: int) -> str:
    """Readable file name of a run: ``ledger.consensus=pos__market.design=dcopf__seed=1``."""
    text = "__".join([*(f"{k}={label(v)}" for k, v in values.items()), f"seed={seed}"])
    safe = re.sub(r"[^A-Za-z0-9._=+-]+", "-", text)
    if len(safe) > MAX_ID_CHARS or safe.startswith("."):
        safe = safe[: MAX_ID_CHARS - 9].lstrip(".") + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return safe


def scenario_hash(scenario_yaml: str) -> str:
    """Hash of an effective scenario (as a run file stores it), without its output path."""
    data = yaml.safe_load(scenario_yaml) or {}
    if isinstance(data.get("output"), dict):
        data["output"].pop("path", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read(study: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str, Path]:
    """The study mapping, its name for messages and the directory relative paths start from."""
    if isinstance(study, dict):
        return study, "study", Path.cwd()
    path = Path(study)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioError([("(file)", f"cannot read {path}: {exc.strerror}")], str(path)) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([("(file)", f"not valid YAML: {exc}")], str(path)) from None
    if not isinstance(data, dict):
        raise ScenarioError([("(top level)", "the study must be a YAML mapping")], str(path))
    return data, str(path), path.resolve().parent


def _key_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Dotted keys of the study mapping that are malformed, reserved or given twice."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for section in ("set", "factors", "zip"):
        keys = data.get(section)
        for key in keys if isinstance(keys, dict) else {}:
            key = str(key)
            where = f"{section}[{key}]" if "." in key else f"{section}.{key}"
            if not KEY_RE.match(key):
                problems.append((where, "not a dotted scenario key (e.g. market.design, ledger.validators)"))
            elif key in RESERVED:
                problems.append((where, f"cannot be varied here: {RESERVED[key]}"))
            elif key in seen:
                problems.append((where, f"already given in {seen[key]}"))
            seen.setdefault(key, section)
    return problems


def _combinations(study: Study) -> list[dict[str, Any]]:
    """Every combination of factor values (full factorial) crossed with the zipped rows."""
    n_zip = len(next(iter(study.zip.values()))) if study.zip else 1
    combos = []
    for values in itertools.product(*study.factors.values(), range(n_zip)):
        combo = dict(zip(study.factors, values[:-1], strict=True))
        combo |= {k: v[values[-1]] for k, v in study.zip.items()}
        combos.append(combo)
    return combos


def _key(combo: dict[str, Any]) -> str:
    return json.dumps(combo, sort_keys=True, default=str)


def _when(study: Study, bad: list[dict[str, Any]], combos: list[dict[str, Any]], unknown: set[str]) -> str:
    """The factor values that make these combinations invalid, as short as the data allows.

    A level explains the problem when every combination with it has the problem or is among ``unknown``
    (combinations where the check could not run).
    """
    if len(bad) == len(combos):
        return "(in every combination)" if study.keys else ""
    groups = [[k] for k in study.factors] + ([list(study.zip)] if study.zip else [])
    bad_set = {_key(c) for c in bad}
    causes, covered = [], set()
    for keys in groups:
        for level in {json.dumps([c[k] for k in keys], default=str) for c in combos}:
            with_level = {_key(c) for c in combos if json.dumps([c[k] for k in keys], default=str) == level}
            if with_level & bad_set and with_level <= bad_set | unknown:
                vals = json.loads(level)
                causes.append(", ".join(f"{k}={label(v)}" for k, v in zip(keys, vals, strict=True)))
                covered |= with_level
    if causes and bad_set <= covered:
        return "(when " + " or ".join(sorted(causes)) + ")"
    listed = [", ".join(f"{k}={label(v)}" for k, v in c.items()) for c in bad[:MAX_LISTED]]
    more = f" and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    return "(with " + "; with ".join(listed) + more + ")"


def plan_study(
    study: str | Path | dict[str, Any], *, days: float | None = None, steps: int | None = None
) -> Plan:
    """Read and validate a study, validate every run's scenario, and list the runs.

    Parameters
    ----------
    study : the study YAML file, or its mapping (relative paths then start from the working directory)
    days, steps : override the study's run length (the command line's ``--days``/``--steps``)

    Raises
    ------
    ScenarioError
        every problem of the study file, of its base scenario, and of each invalid combination.
    """
    from cosim.overrides import effective

    data, source, base_dir = _read(study)
    problems = _key_problems(data)
    try:
        spec = Study.model_validate(data)
    except ValidationError as exc:
        problems = [
            (_where(tuple(e["loc"])), msg) for e, (_, msg) in zip(exc.errors(), problems_of(exc), strict=True)
        ] + problems
    if problems:
        raise ScenarioError(problems, source)
    if days is not None or steps is not None:
        spec = spec.model_copy(update={"days": days, "steps": steps})
    if isinstance(spec.base, dict):
        base_data, base_src = spec.base, f"{source}: base"
    else:
        base_path = spec.base if spec.base.is_absolute() else base_dir / spec.base
        base_dir = base_path.parent
        base_src = str(base_path)
        try:
            base_data = yaml.safe_load(base_path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ScenarioError(
                [("base", f"cannot read the base scenario {base_path}: {exc}")], source
            ) from None
        load_scenario(base_path)  # the base alone must be valid: its problems with the base file's paths
    combos = _combinations(spec)
    scenarios: list[Scenario] = []
    failures: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for combo in combos:
        run_data = copy.deepcopy(base_data)
        try:
            for key, value in (spec.set | combo).items():
                apply(run_data, key, value)
            scenarios.append(validate_scenario(run_data, base_src, base_dir))
        except KeyError as exc:
            failures.setdefault(("factors", str(exc.args[0])), []).append(combo)
        except ScenarioError as exc:
            for problem in exc.problems:
                failures.setdefault(problem, []).append(combo)
    if failures:
        # whole-scenario checks run only on scenarios whose fields are valid: those others are unknown
        field_bad = {_key(c) for (path, _), bad in failures.items() if path != "(top level)" for c in bad}
        problems = []
        for (path, msg), bad in failures.items():
            when = _when(spec, bad, combos, field_bad if path == "(top level)" else set())
            problems.append((path, f"{msg} {when}".rstrip()))
        raise ScenarioError(problems, source)
    seeds = spec.seeds or [scenarios[0].seed]
    plan = Plan(spec, source)
    for combo, scenario in zip(combos, scenarios, strict=True):
        for seed in seeds:
            eff = effective(scenario, steps=spec.steps, days=spec.days, seed=seed)
            plan.runs.append(Run(run_id(combo, seed), combo, seed, scenario, scenario_hash(eff.to_yaml())))
    ids = [r.run_id for r in plan.runs]
    if len(set(ids)) < len(ids):  # values that differ only in characters a file name cannot hold
        plan.runs = [
            Run(
                f"{r.run_id}-{r.hash[:6]}" if ids.count(r.run_id) > 1 else r.run_id,
                r.values,
                r.seed,
                r.scenario,
                r.hash,
            )
            for r in plan.runs
        ]
    return plan
