"""The same data bytes on every machine: tiny builds against committed fingerprints.

``data_fingerprints.json`` holds the sha256 of every file of each family's ``tiny`` build
(seed 0) under the numerics pin (``harness/numerics.py``), measured once and committed. This
test rebuilds them wherever it runs. It must pass on Intel and AMD CPUs alike; if it fails on a
machine, the pin does not hold there — never regenerate the file to make it pass.
"""

import json
from pathlib import Path

import pytest

from harness.collect.build import build
from harness.datasets import read_manifest

FINGERPRINTS = json.loads((Path(__file__).parent / "data_fingerprints.json").read_text())


@pytest.mark.parametrize("family", sorted(FINGERPRINTS["families"]))
def test_a_tiny_build_has_the_committed_bytes_on_this_machine(family, tmp_path):
    out = build(family, "tiny", 0, root=tmp_path, workers=1, progress=False)
    got = {k: v["sha256"] for k, v in read_manifest(out)["files"].items()}
    want = FINGERPRINTS["families"][family]
    differ = sorted((k for k in want if got.get(k) != want[k]), key=int)
    assert set(got) == set(want), f"{family}: tasks {sorted(set(got) ^ set(want))} differ"
    assert not differ, (
        f"{family}: {len(differ)} of {len(want)} task files differ from the committed "
        f"fingerprints (first: task {differ[0]}); the numerics pin does not hold on this CPU"
    )


def test_verify_against_says_the_same_dataset_or_names_the_modified_file(tmp_path, capsys):
    from harness.cli import main

    out = build("point-robot", "tiny", 0, root=tmp_path, workers=1, progress=False)
    reference = tmp_path / "point-robot.json"
    reference.write_text((out / "manifest.json").read_text())
    args = ["data", "verify", "point-robot", "--budget", "tiny", "--root", str(tmp_path)]
    assert main([*args, "--against", str(reference)]) == 0
    assert "is the reference's dataset, byte for byte" in capsys.readouterr().out
    victim = out / "task_0042.npz"
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 1
    victim.write_bytes(bytes(raw))
    assert main([*args, "--against", str(reference)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "task_0042.npz differs" in err


def test_identity_ignores_versions_and_build_record_but_not_the_numerics_pin():
    from harness.datasets import manifest_identity

    base = {"family": {"name": "f"}, "generator": {"seed": 0, "numerics": {"gemm": "a"}}}
    extra = {"versions": {"python": "3.11.7"}, "build": {"wall_s": 1.0}}
    other = {**extra, "versions": {"python": "3.11.9"}, "build": {"wall_s": 2.0}}
    assert manifest_identity({**base, **extra}) == manifest_identity({**base, **other})
    repinned = {**base, "generator": {"seed": 0, "numerics": {"gemm": "b"}}}
    assert manifest_identity(base) != manifest_identity(repinned)


def test_a_contradicting_environment_refuses_to_build_naming_the_variable(monkeypatch, tmp_path):
    from harness.numerics import NumericsError

    monkeypatch.setenv("OPENBLAS_CORETYPE", "SkylakeX")
    with pytest.raises(NumericsError, match="OPENBLAS_CORETYPE=SkylakeX contradicts the data pin"):
        build("point-robot", "tiny", 0, root=tmp_path, workers=1, progress=False)
    assert not any(tmp_path.iterdir())  # refused before anything is written
