"""The committed demo data set (jobs/demo/arithmetic.csv) is what its generator writes
(reference/demo_data.py: SplitMix64 draws, so byte-identical on every Python)."""
from reference import demo_data
from reference.paths import DATA


def test_committed_csv_is_what_the_generator_writes():
    with open(DATA, encoding="utf-8") as f:
        same = f.read() == demo_data.render()
    assert same, f"{DATA} differs from reference/demo_data.py's output: rerun PYTHONPATH=Tests/Python python3 -m reference.demo_data"
