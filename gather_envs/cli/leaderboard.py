"""The ``gather-envs leaderboard verify|build`` subcommands ."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_INVALID = 1
"""``verify`` exit status when a submission is invalid (2 stays the CLI's usage/input error)."""
BUILD_FORMATS = ("site", "md")


def _check_dirs(dirs: list[str]) -> None:
    """A path that is not a directory is a usage error (exit 2), not an invalid submission."""
    from gather_envs.leaderboard.verify import SUBMISSION_FILE, LeaderboardError

    for directory in dirs:
        if not Path(directory).is_dir():
            raise LeaderboardError(
                f"{directory} is not a directory; a submission is a directory holding {SUBMISSION_FILE} and its records"
            )


def cmd_verify(args: argparse.Namespace) -> int:
    from gather_envs.leaderboard.verify import verify_submission

    _check_dirs(args.dirs)
    status = 0
    for directory in args.dirs:
        verification = verify_submission(directory)
        for problem in verification.problems:
            print(problem)
        if verification.ok:
            envs = ", ".join(verification.envs)
            print(f"{directory}: valid ({verification.track.label}; {envs})")
            for env_id, env in verification.envs.items():
                shares = ", ".join(f"T={t} {share:.1%}" for t, share in env.duplicates.per_budget.items())
                searching = f"{env.duplicates.searching:.1%}" if max(env.duplicates.per_budget) >= 1 else "—"
                print(f"  {env_id}: repeated trajectories {searching} at T >= 1 ({shares})")
        else:
            print(f"{directory}: INVALID ({len(verification.problems)} problems)", file=sys.stderr)
            status = EXIT_INVALID
    return status


def cmd_build(args: argparse.Namespace) -> int:
    from gather_envs.leaderboard.build import build_data, render_markdown, write_site
    from gather_envs.leaderboard.verify import LeaderboardError, verify_submission

    _check_dirs(args.dirs)
    if args.format == "site" and not args.out:
        raise LeaderboardError("leaderboard build --format site needs --out SITE (the directory to write)")
    verifications = [verify_submission(directory) for directory in args.dirs]
    invalid = [v for v in verifications if not v.ok]
    for verification in invalid:
        for problem in verification.problems:
            print(problem, file=sys.stderr)
    if invalid:
        names = ", ".join(str(v.directory) for v in invalid)
        raise LeaderboardError(f"refusing to build: {names} did not verify (problems above); fix them first")
    data = build_data(verifications)
    if args.format == "md":
        text = render_markdown(data)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            print(text, end="")
        return 0
    index = write_site(data, args.out)
    print(f"wrote {index} ({len(data['boards'])} boards, {len(verifications)} submissions)")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``leaderboard verify`` and ``leaderboard build`` on the CLI's subparsers."""
    board = subparsers.add_parser(
        "leaderboard", help="verify leaderboard submissions and build the static leaderboard site"
    )
    sub = board.add_subparsers(dest="leaderboard_command", required=True, metavar="COMMAND")
    verify = sub.add_parser(
        "verify",
        help="recompute a submission from its records and check it against the published grid",
        description="Check submission directories; one line per problem (file:line: rule: message). "
        "Exit 0 when all are valid, 1 when one is not.",
    )
    verify.add_argument("dirs", nargs="+", metavar="DIR", help="submission directories")
    verify.set_defaults(func=cmd_verify)
    build = sub.add_parser(
        "build",
        help="verify submissions, then write the static site (or a markdown table)",
        description="Verify every DIR, then write a static site (index.html, app.js, style.css, "
        "data.json) into --out, or with --format md a markdown table (to --out or stdout).",
    )
    build.add_argument("dirs", nargs="+", metavar="DIR", help="submission directories")
    build.add_argument("--out", metavar="SITE", help="output directory (site) or file (md)")
    build.add_argument(
        "--format", choices=BUILD_FORMATS, default="site", help="site or md (default %(default)s)"
    )
    build.set_defaults(func=cmd_build)
    return board
