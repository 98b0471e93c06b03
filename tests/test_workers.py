"""The stage runner: typed jobs and outcomes, set-up once per worker, phases in order, failures kept."""

from __future__ import annotations

import os

import pytest

from dftoolkit.workers import Outcome, Stage, run_stage


class _Square(Stage[int, tuple[int, int]]):
    """Squares its jobs; fails on 3. The result carries the worker's pid and its set-up count."""

    name = "squaring"

    def __init__(self) -> None:
        self.setups = 0

    def setup(self) -> None:
        self.setups += 1

    def run(self, job: int) -> tuple[int, int]:
        if job == 3:
            raise ValueError("three is refused")
        return job * job, self.setups


@pytest.mark.parametrize("workers", [1, 2])
def test_every_job_gets_one_outcome_and_a_failure_stays_with_its_job(workers, tmp_path):
    outcomes = list(run_stage(_Square(), [[1, 2, 3, 4]], workers=workers, log_path=tmp_path / "w.log"))
    assert all(isinstance(o, Outcome) for o in outcomes)
    by_job = {o.job: o for o in outcomes}
    assert sorted(by_job) == [1, 2, 3, 4]
    assert {job: o.result[0] for job, o in by_job.items() if o.error is None} == {1: 1, 2: 4, 4: 16}
    assert by_job[3].result is None and by_job[3].error.strip().endswith("ValueError: three is refused")
    assert all(o.result[1] == 1 for o in outcomes if o.result)  # set up once per worker, not per job
    assert all(o.seconds >= 0 for o in outcomes)


def test_a_phase_is_planned_after_the_one_before_has_finished(tmp_path):
    seen: list[int] = []

    def phases():
        yield [1, 2]
        assert sorted(seen) == [1, 2]  # every outcome of the first phase came back first
        yield [j + 10 for j in seen]

    for outcome in run_stage(_Square(), phases(), workers=2, log_path=tmp_path / "w.log"):
        seen.append(outcome.job)
    assert sorted(seen) == [1, 2, 11, 12]


def test_unknown_engine_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="engine must be one of"):
        next(run_stage(_Square(), [[1]], engine="dask", log_path=tmp_path / "w.log"))
    assert not os.path.exists(tmp_path / "w.log")


def test_every_error_class_of_the_toolkit_shares_one_base():
    """One ``except DftoolkitError`` catches the toolkit's own errors; each is still the builtin it
    refines (callers catching ``ValueError`` keep working)."""
    import dftoolkit
    from dftoolkit.checkpoints import CheckpointError
    from dftoolkit.config import ConfigError
    from dftoolkit.corpora.base import CorpusError
    from dftoolkit.fetch import FetchError
    from dftoolkit.locks import FolderLockedError
    from dftoolkit.paths import PathEscapeError
    from dftoolkit.video.probe import VideoDecodeError

    refined = {
        dftoolkit.ManifestError: ValueError,
        dftoolkit.RecordError: ValueError,
        PathEscapeError: ValueError,
        CorpusError: ValueError,
        CheckpointError: ValueError,
        ConfigError: ValueError,
        FetchError: RuntimeError,
        FolderLockedError: RuntimeError,
        VideoDecodeError: RuntimeError,
    }
    for error, builtin in refined.items():
        assert issubclass(error, dftoolkit.DftoolkitError) and issubclass(error, builtin), error
