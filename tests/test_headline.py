"""The README's headline is the committed reference report's, and that report is its runs'."""

from pathlib import Path

import pandas as pd
import pytest

from harness.headline import END, START, headline, splice
from harness.plots import paper_levels
from harness.report import build_report
from harness.runner import load_final_draws, load_online, load_results, load_train_logs

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reports" / "reference"


def test_readme_headline_is_what_the_committed_reference_report_files_give():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(START) : readme.index(END) + len(END)]
    want = headline(
        pd.read_csv(REFERENCE / "results.csv"),
        pd.read_csv(REFERENCE / "findings.csv"),
        paper_levels(),
    )
    assert block == want, (
        "README's headline is stale: python -m harness report reports/reference "
        "--against reports/reference/data --readme README.md"
    )


def test_rebuilding_the_reference_report_from_its_committed_runs_gives_its_tables(tmp_path):
    out = build_report(
        load_results(REFERENCE),
        tmp_path / "rebuilt",
        "Suite: reference",
        train=load_train_logs(REFERENCE),
        draws=load_final_draws(REFERENCE),
        online=load_online(REFERENCE),
    )
    for name in ("results.csv", "findings.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(out / name), pd.read_csv(REFERENCE / name), check_exact=False, rtol=1e-9
        )


def test_the_headline_marks_missing_cells_few_seeds_and_success_rates():
    results = pd.DataFrame(
        [
            {"algorithm": "macaw", "family": "cheetah-vel", "seeds": 6, "mean": -61.46, "se": 2.93},
            {"algorithm": "pearl", "family": "cheetah-vel", "seeds": 6, "mean": -178.3, "se": 6.9},
            {"algorithm": "macaw", "family": "ml10", "seeds": 3, "mean": 0.4567, "se": 0.051},
        ]
    )
    findings = pd.DataFrame(
        [
            {
                "hypothesis_family": "src",
                "claim": "MACAW > offline PEARL",
                "family": "cheetah-vel",
                "runs": "6 vs 6",
                "p_holm": 0.0043,
                "verdict": "holds (adjusted p 0.0043); MACAW still rising",
            }
        ]
    )
    text = headline(results, findings, {"cheetah-vel": {"pearl": -306.0}})
    assert "| MACAW | −61.5 ± 2.9 | 0.46 ± 0.05 (3 seeds) |" in text
    assert "| offline PEARL | −178.3 ± 6.9 | (to run) |" in text
    assert "| offline PEARL −306 | — |" in text
    assert (
        "| src (1) | MACAW > offline PEARL | cheetah-vel | 6 vs 6 | **holds** (adjusted p 0.0043); "
        "MACAW still rising |" in text
    )


def test_splice_replaces_only_the_block_and_refuses_a_readme_without_one():
    text = f"intro\n{START}\nold table\n{END}\noutro\n"
    assert splice(text, "NEW") == "intro\nNEW\noutro\n"
    with pytest.raises(ValueError, match="no headline block"):
        splice("intro\noutro\n", "NEW")


def test_every_built_in_learner_has_a_display_name_and_a_colour_from_the_one_table():
    from algorithms import learner_class
    from algorithms.base import known_learners
    from harness.labels import LABELS, color, display_name

    built_in = {
        n for n in known_learners() if learner_class(n).__module__.startswith("algorithms.")
    }
    assert built_in <= set(LABELS) and len(built_in) == 6
    colours = [color(k) for k in LABELS]
    assert len(set(colours)) == len(colours)  # no two learners share a colour
    assert display_name("pearl") == "offline PEARL" and display_name("mine") == "mine"
    assert color("mine", 0) != color("mine", 1)
