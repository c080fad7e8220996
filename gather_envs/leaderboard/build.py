"""``leaderboard build``: verified submissions as one JSON data file, a static site and a markdown table.

One board per (track, env); each synthetic env is one task family, so a board is also that
family's board. Entries are ranked by PASS@(1,T) at the board's largest budget T (then
PASS@(K,T), |B_T|, name), with K the track's n. "Above the next" is the paired test of
:func:`gather_envs.metrics.compare_runs`: the paired-bootstrap 95% interval of the PASS@(1,T)
difference to the next entry lies above 0; McNemar's exact p on the boundary sets is shown beside
it. Every pair of entries gets the full paired comparison for the site's side-by-side view.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from importlib import resources
from itertools import combinations
from pathlib import Path
from typing import Any

import gather_envs
from gather_envs.envs.floor import chance_floor_of
from gather_envs.leaderboard.tracks import TRACKS
from gather_envs.leaderboard.verify import LeaderboardError, Verification, VerifiedEnv, installed_corpus_hash
from gather_envs.metrics import compare_runs

DATA_SCHEMA_VERSION = 1
DATA_FILE = "data.json"
SITE_FILES = ("index.html", "app.js", "style.css")
DATA_PLACEHOLDER = "__LEADERBOARD_DATA__"
"""Replaced in index.html by the data, so the page also works opened from disk (file://)."""
METADATA_KEYS = ("model", "backend", "date", "authors", "links", "notes", "prompts_modified")


def _entry(verification: Verification, env: VerifiedEnv) -> dict[str, Any]:
    """One entry of a board: metadata from submission.json, every number from the records."""
    submission = verification.submission
    results = env.results.to_json()
    return {
        "name": submission["name"],
        "agent": submission["agent"]["id"],
        "agent_settings": submission["agent"]["settings"],
        **{key: submission[key] for key in METADATA_KEYS},
        "n": results["n"],
        "num_tasks": results["num_tasks"],
        "infra_errors": results["infra_errors_total"],
        "table": results["table"],
        "boundary": results["boundary"],
        "t_star": results["t_star"],
        "chance_floor": results["chance_floor"],
    }


def _cell(entry: dict[str, Any], budget: int, k: int) -> dict[str, Any]:
    for row in entry["table"]:
        if row["T"] == budget and row["k"] == k:
            return row
    raise LeaderboardError(f"entry {entry['name']!r} has no PASS@({k},{budget})")


def _pair(a: VerifiedEnv, b: VerifiedEnv) -> dict[str, Any]:
    """The paired comparison of two entries of a board, per budget (for the side-by-side view)."""
    comparison = compare_runs(list(a.records), list(b.records), chance_floor=chance_floor_of(a.records))
    per_budget = []
    for entry in comparison.per_budget:
        data = entry.to_json()
        per_budget.append(
            {
                "T": data["T"],
                "ks": data["ks"],
                "diff": data["diff"],
                "diff_low": data["diff_low"],
                "diff_high": data["diff_high"],
                "only_a": data["boundary"]["only_a"],
                "only_b": data["boundary"]["only_b"],
                "both": len(entry.both),
                "neither": entry.neither,
                "mcnemar_p": entry.mcnemar_p,
            }
        )
    return {"per_budget": per_budget}


def _board(track: str, env_id: str, members: Sequence[tuple[Verification, VerifiedEnv]]) -> dict[str, Any]:
    """A ranked board of one track and env, with the paired test between neighbours and all pairs."""
    spec = TRACKS[track]
    entries = [_entry(v, env) for v, env in members]
    budgets = sorted({row["T"] for entry in entries for row in entry["table"]})
    rank_t = max(budgets)
    by_name = {v.submission["name"]: env for v, env in members}

    def key(entry: dict[str, Any]) -> tuple[float, float, int, str]:
        top = _cell(entry, rank_t, spec.top_k)["pass"]
        return (-_cell(entry, rank_t, 1)["pass"], -top, -entry["boundary"][str(rank_t)], entry["name"])

    entries.sort(key=key)
    pairs: dict[str, Any] = {}
    for a, b in combinations([entry["name"] for entry in entries], 2):
        pairs[f"{a}|{b}"] = _pair(by_name[a], by_name[b])
    for upper, lower in zip(entries, entries[1:]):
        at_t = next(e for e in pairs[f"{upper['name']}|{lower['name']}"]["per_budget"] if e["T"] == rank_t)
        low = at_t["diff_low"][0]
        upper["above_next"] = {
            "next": lower["name"],
            "diff": at_t["diff"][0],
            "diff_low": low,
            "diff_high": at_t["diff_high"][0],
            "mcnemar_p": at_t["mcnemar_p"],
            "significant": low is not None and low > 0,
        }
    family = members[0][1].family
    return {
        "id": f"{track}/{env_id}",
        "track": track,
        "track_label": spec.label,
        "env_id": env_id,
        "family": family,
        "budgets": budgets,
        "rank_T": rank_t,
        "top_k": spec.top_k,
        "num_tasks": spec.tasks,
        "chance_floor": entries[0]["chance_floor"],
        "order": [entry["name"] for entry in entries],
        "entries": entries,
        "pairs": pairs,
    }


def build_data(verifications: Sequence[Verification]) -> dict[str, Any]:
    """The site's data: one ranked board per (track, env) over the verified submissions."""
    if not verifications:
        raise LeaderboardError("no submissions to build from")
    groups: dict[tuple[str, str], list[tuple[Verification, VerifiedEnv]]] = {}
    names: dict[str, Path] = {}
    for verification in verifications:
        if not verification.ok:
            raise LeaderboardError(f"{verification.directory} did not verify; run leaderboard verify on it")
        name = verification.submission["name"]
        if name in names:
            raise LeaderboardError(
                f"two submissions are named {name!r} ({names[name]} and {verification.directory}); rename one"
            )
        names[name] = verification.directory
        for env_id, env in verification.envs.items():
            groups.setdefault((verification.submission["track"], env_id), []).append((verification, env))
    boards = [_board(track, env_id, groups[(track, env_id)]) for track, env_id in sorted(groups)]
    return {
        "schema_version": DATA_SCHEMA_VERSION,
        "gather_envs_version": gather_envs.__version__,
        "corpus_hash": installed_corpus_hash(),
        "boards": boards,
    }


def write_site(data: dict[str, Any], out: str | Path) -> Path:
    """Write index.html, app.js, style.css and data.json into ``out``; returns index.html's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    site = resources.files("gather_envs.leaderboard").joinpath("site")
    text = json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False)
    (out / DATA_FILE).write_text(text + "\n", encoding="utf-8")
    for name in SITE_FILES:
        with resources.as_file(site.joinpath(name)) as source:
            shutil.copyfile(source, out / name)
    index = out / "index.html"
    embedded = json.dumps(data, ensure_ascii=False, allow_nan=False).replace("</", "<\\/")
    index.write_text(index.read_text(encoding="utf-8").replace(DATA_PLACEHOLDER, embedded), encoding="utf-8")
    return index


def _fmt(row: dict[str, Any]) -> str:
    if row["ci_low"] is None:
        return f"{row['pass']:.3f}"
    return f"{row['pass']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def render_markdown(data: dict[str, Any]) -> str:
    """One markdown table per board, for a README."""
    lines: list[str] = []
    for board in data["boards"]:
        t, k = board["rank_T"], board["top_k"]
        floor = board["chance_floor"]
        lines += [f"### {board['env_id']} ({board['family']}), {board['track_label']}", ""]
        lines.append(
            f"| rank | entry | PASS@(1,{t}) [95% CI] | PASS@({k},{t}) [95% CI] | \\|B_{t}\\| | T* | "
            f"chance floor k=1 / k={k} | above next (paired) |"
        )
        lines.append("|---:|---|---|---|---:|---:|---|---|")
        for rank, entry in enumerate(board["entries"], start=1):
            above = entry.get("above_next")
            verdict = "—" if above is None else (
                f"{'yes' if above['significant'] else 'no'} (Δ {above['diff']:+.3f}, McNemar p {above['mcnemar_p']:.3g})"
            )  # fmt: skip
            floors = " / ".join(f"{floor[str(x)]:.3f}" if str(x) in floor else "—" for x in (1, k))
            lines.append(
                f"| {rank} | {entry['name']} | {_fmt(_cell(entry, t, 1))} | {_fmt(_cell(entry, t, k))} | "
                f"{entry['boundary'][str(t)]} | {'—' if entry['t_star'] is None else entry['t_star']} | "
                f"{floors} | {verdict} |"
            )
        lines.append("")
    return "\n".join(lines)
