"""Turn the scripted baselines into leaderboard submissions under ``baselines/submissions/``.

For each scripted definition (``oracle``, ``random``, ``heuristic``) and each of its envs this runs
``gather-envs eval --actions`` on the leaderboard's published grid for the chosen track (seed 0, the
track's task sample, T in {0,1,2,3,5}; the static family at T = 0 only; every record keeps its
actions, so verify can replay it), writes the claimed results with
``gather-envs report --format json`` and a ``submission.json``. Then ``gather-envs leaderboard
verify`` checks the directory. Usage::

    python baselines/submit_baselines.py                 # quick track (what is shipped)
    python baselines/submit_baselines.py --track main --gzip   # n = 64 on 100 tasks; records as .jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "gather_envs.cli"]
SCRIPTED = ("oracle", "random", "heuristic")
DATE = "2026-12-01"


def compress(path: Path) -> Path:
    """Replace a records file by its gzip-compressed copy ``<path>.gz`` (verify reads it as is)."""
    packed = path.with_name(path.name + ".gz")
    with path.open("rb") as source, gzip.open(packed, "wb") as target:
        shutil.copyfileobj(source, target)
    path.unlink()
    return packed


def submit(name: str, track: str, out_root: Path, compressed: bool = False) -> Path:
    """Run one baseline on the track's grid and write its submission directory."""
    from gather_envs.leaderboard.tracks import TRACKS

    spec = TRACKS[track]
    definition = json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))
    out = out_root / name
    envs = {}
    for env_id in definition["envs"]:
        records = out / "records" / f"{env_id}.jsonl"
        results = out / "results" / f"{env_id}.json"
        records.parent.mkdir(parents=True, exist_ok=True)
        results.parent.mkdir(parents=True, exist_ok=True)
        command = [*CLI, "eval", env_id, "--agent", definition["agent"], "--out", str(records)]
        command += ["--n", str(spec.n), "--tasks", str(spec.tasks), "--seed", str(spec.seed)]
        command += ["--budgets", ",".join(map(str, spec.budgets)), "--actions", "--quiet"]
        for key, value in (definition.get("agent_options") or {}).items():
            command += ["--agent-option", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
        subprocess.run(command, check=True)
        report = subprocess.run(
            [*CLI, "report", str(records), "--format", "json"], check=True, capture_output=True, text=True
        )
        results.write_text(report.stdout, encoding="utf-8")
        if compressed:
            records = compress(records)
        envs[env_id] = {
            "records": [str(records.relative_to(out))],
            "results": str(results.relative_to(out)),
        }
    submission = {
        "schema_version": 1,
        "name": name,
        "track": track,
        "model": definition.get("model"),
        "agent": {"id": definition["agent"], "settings": definition.get("agent_options") or {}},
        "backend": definition.get("backend"),
        "date": DATE,
        "authors": ["gather-envs maintainers"],
        "links": [],
        "notes": definition.get("description", ""),
        "prompts_modified": False,
        "envs": envs,
    }
    (out / "submission.json").write_text(json.dumps(submission, indent=2) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", default=list(SCRIPTED), help="baselines (default: all scripted)")
    parser.add_argument("--track", default="quick", choices=("quick", "main"))
    parser.add_argument("--out", type=Path, default=HERE / "submissions")
    parser.add_argument("--gzip", action="store_true", help="store the records gzip-compressed (.jsonl.gz)")
    args = parser.parse_args(argv)
    for name in args.names:
        out = submit(name, args.track, args.out, args.gzip)
        subprocess.run([*CLI, "leaderboard", "verify", str(out)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
