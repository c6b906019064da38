"""
Mutation testing of rustybeam's core modules with mutmut (3.x); run it with
C{tests/mutation [-j N] [module ...]}.

Each module is mutated on its own, in its own working copy under C{mutants/<module>/},
and each of its mutants is checked only against that module's fast unit tests
(L{MODULES}; no servers, no browser), which mutmut narrows further to the tests that
reach the mutated function. Every run starts afresh (mutmut's cache would not see
a changed test). Mutants recorded as equivalent in C{tests/mutation-equivalents.txt}
(one per line: the mutant's name, then why no test can tell it apart) are left out
of the score; the score is the share of the other mutants that a test killed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
WORK = PROJECT / "mutants"
EQUIVALENTS = PROJECT / "tests" / "mutation-equivalents.txt"

MODULES: dict[str, list[str]] = {
    "changes": ["tests/test_notifier.py", "tests/test_units.py"],
    "streamitem": ["tests/test_streamitem.py"],
    "selectors": ["tests/test_units.py"],
    "ids": ["tests/test_ids.py"],
    "paths": ["tests/test_units.py"],
    "accesslog": ["tests/test_accesslog.py"],
    "guard": ["tests/test_guard.py"],
    "markup": ["tests/test_units.py", "tests/test_microdata.py", "tests/test_markup_units.py"],
    "notifier": ["tests/test_notifier.py"],
    "wire": ["tests/test_wire.py", "tests/test_express_lane.py",
             "tests/test_websocket_units.py::test_pending_bytes_counts_what_the_transport_has_not_yet_written",
             "tests/test_websocket_units.py::test_a_transport_without_a_buffer_has_nothing_pending"],
    "websocket": ["tests/test_websocket_units.py", "tests/test_websocket_upgrade.py",
                  "tests/test_websocket_deflate.py", "tests/test_express_lane.py"],
    "documents": ["tests/test_units.py", "tests/test_documents_units.py",
                  "tests/test_durability.py::test_failed_durable_write_leaves_the_cache_untouched"],
    "auth": ["tests/test_auth.py", "tests/test_auth_units.py"],
}
"""Each core module and its fast unit tests, smallest module first."""

KILLED = {"killed", "timeout", "caught by type check", "segfault"}
"""Outcomes in which a test (or the run) told the mutant apart from the code."""


@dataclass
class Score:
    module: str
    statuses: dict[str, str] = field(default_factory=dict)
    equivalent: set[str] = field(default_factory=set)
    mutated: int = -1
    """Mutants generated (-1: unknown), to tell a module with none from a failed run."""

    @property
    def counted(self) -> dict[str, str]:
        return {n: s for n, s in self.statuses.items()
                if n not in self.equivalent and s not in ("skipped", "not checked")}

    @property
    def killed(self) -> int:
        return sum(s in KILLED for s in self.counted.values())

    @property
    def alive(self) -> list[str]:
        return sorted(n for n, s in self.counted.items() if s not in KILLED)

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / len(self.counted) if self.counted else 100.0

    def line(self) -> str:
        if not self.statuses:
            return (f"{self.module:<11}   no mutants (mutmut mutates no decorated function or "
                    "class body)" if self.mutated == 0 else f"{self.module:<11}   no result")
        equivalent = len(self.equivalent & set(self.statuses))
        unchecked = sum(s in ("skipped", "not checked") for s in self.statuses.values())
        return (f"{self.module:<11} {self.percent:5.1f}%  killed {self.killed} of "
                f"{len(self.counted)}  ({len(self.statuses)} mutants, {equivalent} equivalent"
                + (f", {unchecked} not checked" if unchecked else "") + ")")


def equivalents() -> dict[str, str]:
    """The recorded equivalent mutants and why each is one."""
    found: dict[str, str] = {}
    if EQUIVALENTS.exists():
        for line in EQUIVALENTS.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, reason = line.partition(" ")
                found[name] = reason.strip()
    return found


def prepare(module: str, workdir: Path, again: bool = False) -> None:
    """A working copy of the code and tests with mutmut configured for C{module};
    C{again} keeps the mutants of the last run and only brings the tests (and the
    test selection, L{MODULES}) up to date."""
    workdir.mkdir(parents=True, exist_ok=True)
    if again:
        for tests in (workdir / "tests", workdir / "mutants" / "tests"):
            shutil.rmtree(tests, ignore_errors=True)
            shutil.copytree(PROJECT / "tests", tests,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (workdir / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    else:
        shutil.rmtree(workdir / "mutants", ignore_errors=True)
        for tree in ("rustybeam", "tests"):
            shutil.rmtree(workdir / tree, ignore_errors=True)
            shutil.copytree(PROJECT / tree, workdir / tree,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    def toml(values: list[str]) -> str:
        return "[" + ", ".join(f'"{v}"' for v in values) + "]"

    config = (PROJECT / "pyproject.toml").read_text(encoding="utf-8") + f"""
[tool.mutmut]
source_paths = ["rustybeam"]
only_mutate = ["rustybeam/{module}.py"]
pytest_add_cli_args_test_selection = {toml(MODULES[module])}
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-m", "not browser and not slow"]
process_isolation = "forkserver"
forkserver_warmup = "collect"
"""
    (workdir / "pyproject.toml").write_text(config, encoding="utf-8")


RESULT = re.compile(r"^\s+(\S+): (.+)$")


def results(module: str, workdir: Path, env: dict[str, str]) -> dict[str, str]:
    """Each mutant of C{module} in C{workdir} and what became of it."""
    listing = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"],
                             cwd=workdir, env=env, capture_output=True, text=True,
                             check=False).stdout
    found = {}
    for line in listing.splitlines():
        match = RESULT.match(line)
        if match and match.group(1).startswith(f"rustybeam.{module}."):
            found[match.group(1)] = match.group(2)
    return found


def run(module: str, children: int, again: bool = False) -> Score:
    workdir = WORK / module
    env = dict(os.environ, RUSTYBEAM_SHARED=str(PROJECT.parent / "shared"))
    names: list[str] = []
    if again and (workdir / "mutants").is_dir():
        last = results(module, workdir, env)
        known = equivalents()
        # New tests may reach mutants no old test did (but not the recorded equivalents).
        if all(s != "no tests" or n in known for n, s in last.items()):
            names = sorted(n for n, s in last.items() if s not in KILLED and n not in known)
    prepare(module, workdir, again=bool(names))
    with open(workdir / "run.log", "w") as log:
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children),
                        *names], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                       check=False)
    score = Score(module)
    score.statuses = results(module, workdir, env)
    mutated = workdir / "mutants" / "rustybeam" / f"{module}.py"
    if mutated.exists():
        score.mutated = len(re.findall(r"__mutmut_\d+\b", mutated.read_text(encoding="utf-8")))
    score.equivalent = {n for n in equivalents() if n.startswith(f"rustybeam.{module}.")}
    return score


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="module",
                        help=f"modules to mutate (default: all of {', '.join(MODULES)})")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2,
                        help="parallel mutmut workers (default: the number of CPUs)")
    parser.add_argument("--again", action="store_true",
                        help="re-check only the mutants the last run left alive, with the "
                             "current tests (faster, after adding tests; not after changing "
                             "code); a module that had mutants no test reached runs afresh")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s): {', '.join(unknown)}")
    scores = []
    for module in args.modules or list(MODULES):
        started = time.monotonic()
        score = run(module, args.jobs, args.again)
        scores.append(score)
        if not score.statuses:
            print(f"{score.line()}  {time.monotonic() - started:.0f} s  (see "
                  f"{WORK / module / 'run.log'})", flush=True)
            continue
        print(f"{score.line()}  {time.monotonic() - started:.0f} s", flush=True)
        for name in score.alive:
            print(f"    {score.statuses[name]}: {name}  (cd mutants/{module} && "
                  f"python -m mutmut show {name})", flush=True)
        for name in sorted(score.equivalent):
            if score.statuses.get(name, "killed") in KILLED:
                print(f"    stale entry in {EQUIVALENTS.name}: {name} "
                      f"({score.statuses.get(name, 'no such mutant')})", flush=True)
    print("\nmutation scores (killed / non-equivalent mutants):")
    for score in scores:
        print("  " + score.line())
    return 0 if all(s.statuses or s.mutated == 0 for s in scores) else 1


if __name__ == "__main__":
    raise SystemExit(main())
