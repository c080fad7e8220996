"""Check that the built sdist and wheel hold what a pip user and a repackager need.

Usage: python .ci/check_dist.py DIST_DIR  (one .tar.gz and one .whl in it). Prints what it found;
exits 1 naming every missing file.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

WHEEL_NEEDS = (
    "gather_envs/py.typed",
    "gather_envs/_corpora/default/manifest.json",
    "gather_envs/_corpora/default/documents.jsonl",
    "gather_envs/_docs/environments.md",
    "gather_envs/_docs/metric.md",
    "gather_envs/_docs/benchmarks.md",
    "gather_envs/leaderboard/schemas/submission.schema.json",
)
WHEEL_LICENSE = "licenses/LICENSE"  # under *.dist-info/
SDIST_NEEDS = ("LICENSE", "README.md", "CHANGELOG.md", "CITATION.cff", "pyproject.toml", "gather_envs/py.typed",
               "corpora/default/manifest.json", "docs/environments.md", "benchmarks/README.md")


def main(dist: Path) -> int:
    """Check the one wheel and the one sdist in ``dist``; 0 when both hold every needed file."""
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    licenses = [n for n in names if n.endswith(f".dist-info/{WHEEL_LICENSE}")]
    missing = [n for n in WHEEL_NEEDS if n not in names] + ([] if licenses else [f"*.dist-info/{WHEEL_LICENSE}"])
    with tarfile.open(sdist) as archive:
        root = archive.getnames()[0].split("/")[0]
        sdist_names = {n.removeprefix(f"{root}/") for n in archive.getnames()}
    missing += [f"sdist: {n}" for n in SDIST_NEEDS if n not in sdist_names]
    docs = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("gather_envs/_docs/") and n.endswith(".md"))
    print(f"{wheel.name}: {len(names)} files; license {licenses}; docs {docs}")
    print(f"{sdist.name}: {len(sdist_names)} files")
    for name in missing:
        print(f"missing: {name}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
