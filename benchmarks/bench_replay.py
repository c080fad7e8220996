"""Time ``leaderboard verify`` (every episode replayed) on a main-track-shaped submission.

The submission is the heuristic agent on the main track's 100-task sample of each leaderboard env,
T in {0,1,2,3,5} (static: T = 0), ``--n`` episodes per cell, recorded with actions. The main track
needs n = 64 (4 envs: 100 x (4 x 5 + 1) x 64 = 134,400 episodes; the issue's 128,000 counts the
static env at 5 budgets); a smaller ``--n`` is timed with the track's n lowered to it in this
process only, and the figure scaled to the 128,000 episodes is printed beside the measured one.
Records are kept in ``--dir`` and resumed, so a second run times verify alone. Prints figures;
asserts nothing about time.

    python benchmarks/bench_replay.py [--n 8] [--dir /tmp/bench-replay]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gather_envs  # noqa: F401  (registers the ids)
from gather_envs.envs.registration import SYNTHETIC_ENVS
from gather_envs.evaluation import evaluate
from gather_envs.leaderboard import tracks
from gather_envs.leaderboard.verify import SUBMISSION_FILE, verify_submission

AGENT = "heuristic"
TARGET_EPISODES = 128_000
TARGET_SECONDS = 60.0


def build(directory: Path, n: int) -> int:
    """Record the submission (resuming what exists); the number of episodes."""
    main = tracks.TRACKS["main"]
    envs = {}
    episodes = 0
    for env_id, spec in SYNTHETIC_ENVS.items():
        budgets = tracks.STATIC_BUDGETS if spec["family"] == "static" else main.budgets
        path = directory / "records" / f"{env_id}.jsonl"
        records = evaluate(
            env_id, AGENT, n=n, budgets=budgets, tasks=main.tasks, seed=main.seed, out=path,
            progress=False, record_actions=True,
        )  # fmt: skip
        episodes += len(records)
        envs[env_id] = {"records": [f"records/{env_id}.jsonl"]}
    submission = {
        "schema_version": 1, "name": "bench", "track": "main", "model": None,
        "agent": {"id": AGENT, "settings": {}}, "backend": None, "date": "2026-12-07",
        "authors": ["bench"], "links": [], "notes": "", "prompts_modified": False, "envs": envs,
    }  # fmt: skip
    (directory / SUBMISSION_FILE).write_text(json.dumps(submission), encoding="utf-8")
    return episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8, help="episodes per (task, T) (the main track's is 64)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-replay"))
    args = parser.parse_args()
    started = time.perf_counter()
    episodes = build(args.dir, args.n)
    print(f"recorded {episodes} episodes in {time.perf_counter() - started:.1f} s (resumed where present)")
    main_track = tracks.TRACKS["main"]
    tracks.TRACKS["main"] = tracks.Track("main", n=args.n, tasks=main_track.tasks, label=main_track.label)
    started, cpu = time.perf_counter(), time.process_time()
    verification = verify_submission(args.dir)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert verification.ok, "\n".join(map(str, verification.problems))
    scale = TARGET_EPISODES / episodes
    print(f"verify (one process): {episodes} episodes read, replayed and checked in {seconds:.2f} s wall, {cpu:.2f} s CPU")
    print(
        f"scaled to {TARGET_EPISODES:,} episodes: {seconds * scale:.1f} s wall, {cpu * scale:.1f} s CPU "
        f"(target <= {TARGET_SECONDS:.0f} s on 2 cores)"
    )


if __name__ == "__main__":
    main()
