"""The data CLI, run as a user would."""

import subprocess
import sys

from tests.conftest import ROOT


def run(*args, env_root):
    return subprocess.run(
        [sys.executable, "-m", "harness", *args, "--root", str(env_root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_unknown_family_is_one_line_error_listing_known_families(tmp_path):
    p = run("data", "info", "cheeta-vel", env_root=tmp_path)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "known families:" in p.stderr and "cheetah-vel" in p.stderr


def test_info_on_a_missing_dataset_says_how_to_build_it(tmp_path):
    p = run("data", "verify", "point-robot", "--budget", "tiny", env_root=tmp_path)
    assert p.returncode == 2 and "python -m harness data build point-robot" in p.stderr


def test_build_info_verify_metaworld_tiny(tmp_path):
    p = run("data", "build", "ml1-reach", "--budget", "tiny", "--quiet", env_root=tmp_path)
    assert p.returncode == 0, p.stderr
    info = run("data", "info", "ml1-reach", "--budget", "tiny", env_root=tmp_path)
    assert info.returncode == 0 and "success first→last" in info.stdout
    assert "mean over 5 test tasks: first 10%" in info.stdout
    assert "0.00 → 1.00" in info.stdout  # the noisiest episode fails, the expert one succeeds
    ok = run("data", "verify", "ml1-reach", "--budget", "tiny", env_root=tmp_path)
    assert ok.returncode == 0 and "25 task files" in ok.stdout


def test_seeds_take_ranges_and_a_typo_is_one_line():
    def dry(seeds):
        cmd = ["run", "--suite", "quick", "--families", "point-robot", "--algorithms", "mt-ft"]
        return subprocess.run(
            [sys.executable, "-m", "harness", *cmd, "--seeds", seeds, "--dry-run"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )

    assert "3 runs" in dry("0..1,7").stdout
    p = dry("0-5")
    assert p.returncode != 0 and p.stderr.count("\n") == 1 and "range like 0..5" in p.stderr
