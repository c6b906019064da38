#!/usr/bin/env python3
"""
Summarise an Autobahn|Testsuite fuzzingclient run (stdlib only).

    python3 summarize.py [reports/servers/index.json] [--markdown]

Prints, per agent, the number of cases, the counts per behaviour (OK, NON-STRICT,
INFORMATIONAL, UNIMPLEMENTED, FAILED) and per close behaviour, and the ids of the
cases that are not OK; with several agents (run --with-reference), their case time
per group of cases (9.1.*, 12.1.*, ...) side by side. Exits 1 if any case is FAILED or closed with a behaviour
other than OK or INFORMATIONAL (an unclean close, a wrong close code, ...), 2 if
the index is missing or empty.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

BEHAVIOURS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
CLOSE_BEHAVIOURS = ("OK", "INFORMATIONAL", "NON-STRICT", "WRONG CODE", "UNCLEAN", "FAILED")
ACCEPTABLE_CLOSE = ("OK", "INFORMATIONAL")


def caseKey(case: str) -> tuple[int, ...]:
    """'12.1.10' sorts after '12.1.9'."""
    return tuple(int(part) if part.isdigit() else 0 for part in case.split("."))


def ordered(counts: Counter[str], known: tuple[str, ...]) -> list[tuple[str, int]]:
    """Known behaviours first (zeros included), then anything unexpected."""
    return [(b, counts.get(b, 0)) for b in known] + sorted(
        (b, n) for b, n in counts.items() if b not in known
    )


def summarize(agent: str, cases: dict[str, dict], markdown: bool = False) -> tuple[str, bool]:
    """The text summary of one agent's cases, and whether they meet the bar."""
    ids = sorted(cases, key=caseKey)
    behaviour = Counter(cases[c].get("behavior", "?") for c in ids)
    close = Counter(cases[c].get("behaviorClose", "?") for c in ids)
    seconds = sum(cases[c].get("duration", 0) for c in ids) / 1000.0
    failed = [c for c in ids if cases[c].get("behavior") == "FAILED"]
    badClose = [c for c in ids if cases[c].get("behaviorClose") not in ACCEPTABLE_CLOSE]
    notOK = [c for c in ids if cases[c].get("behavior") != "OK" or cases[c].get("behaviorClose") != "OK"]

    lines = [f"Autobahn|Testsuite fuzzingclient: {agent}, {len(ids)} cases "
             f"({seconds:.0f} s of case time)", ""]
    if markdown:
        lines += ["| Behaviour | Cases | Close behaviour | Cases |", "|---|---:|---|---:|"]
    else:
        lines += [f"{'Behaviour':<16}{'Cases':>6}    {'Close behaviour':<16}{'Cases':>6}",
                  f"{'-' * 16}{'-' * 6}    {'-' * 16}{'-' * 6}"]
    left, right = ordered(behaviour, BEHAVIOURS), ordered(close, CLOSE_BEHAVIOURS)
    for i in range(max(len(left), len(right))):
        b, n = left[i] if i < len(left) else ("", "")
        cb, cn = right[i] if i < len(right) else ("", "")
        if markdown:
            lines.append(f"| {b} | {n} | {cb} | {cn} |")
        else:
            lines.append(f"{b:<16}{n!s:>6}    {cb:<16}{cn!s:>6}")
    if markdown:
        lines.append(f"| **Total** | **{len(ids)}** | **Total** | **{len(ids)}** |")
    else:
        lines.append(f"{'Total':<16}{len(ids):>6}    {'Total':<16}{len(ids):>6}")

    lines += ["", "Cases not OK:" if notOK else "Cases not OK: none"]
    for c in notOK:
        entry = cases[c]
        detail = f"  {c:<10}{entry.get('behavior', '?'):<15}close {entry.get('behaviorClose', '?')}"
        if entry.get("remoteCloseCode") is not None:
            detail += f" (code {entry['remoteCloseCode']})"
        lines.append(("- `" + detail.strip() + "`") if markdown else detail)

    ok = not failed and not badClose
    lines.append("")
    if ok:
        lines.append("PASS: no case FAILED, every close OK or INFORMATIONAL.")
    else:
        if failed:
            lines.append(f"FAIL: {len(failed)} case(s) FAILED: {', '.join(failed)}")
        if badClose:
            lines.append(f"FAIL: {len(badClose)} case(s) closed badly: {', '.join(badClose)}")
    return "\n".join(lines), ok


def caseTimes(agents: dict[str, dict[str, dict]], markdown: bool = False) -> str:
    """Seconds of case time per group of cases ("9.1" for 9.1.*), one column per agent."""
    names = sorted(agents)
    groups: dict[str, dict[str, float]] = {}
    for agent in names:
        for case, entry in agents[agent].items():
            group = ".".join(case.split(".")[:2])
            row = groups.setdefault(group, {})
            row[agent] = row.get(agent, 0.0) + entry.get("duration", 0) / 1000.0
    ordered = sorted(groups, key=caseKey)
    rows = [[g, *(f"{groups[g].get(a, 0.0):.1f}" for a in names)] for g in ordered]
    rows.append(["total", *(f"{sum(groups[g].get(a, 0.0) for g in ordered):.1f}" for a in names)])
    header = ["case time (s)", *names]
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|---" + "|---:" * len(names) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        out = ["".join(f"{h:>22}" for h in header)]
        out += ["".join(f"{c:>22}" for c in r) for r in rows]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    markdown = "--markdown" in argv
    paths = [a for a in argv if a != "--markdown"]
    index = Path(paths[0] if paths else Path(__file__).parent / "reports" / "servers" / "index.json")
    try:
        agents = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"summarize: cannot read {index}: {e}", file=sys.stderr)
        return 2
    if not agents or not any(agents.values()):
        print(f"summarize: {index} lists no cases", file=sys.stderr)
        return 2
    allOK = True
    for agent in sorted(agents):
        text, ok = summarize(agent, agents[agent], markdown)
        print(text)
        allOK = allOK and ok
    if len(agents) > 1:
        print()
        print(caseTimes(agents, markdown))
    return 0 if allOK else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
