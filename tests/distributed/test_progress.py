"""The sweep's progress line, from counts and a fake clock: no Ray running, no sleeping."""

from __future__ import annotations

from types import SimpleNamespace

from lth_ray.core.options.resolve import from_preset
from lth_ray.distributed.progress import ProgressCallback, Tally, cohort_work, duration, progress_line, trial_tally


def test_line_counts_rounds_rate_and_eta():
    now = Tally(rounds_done=12, rounds_total=60, iterations_done=12_000, iterations_total=60_000)
    line = progress_line(now, iterations_at_start=2_000, elapsed_s=10.0)
    # 10,000 iterations in 10 s: 1,000 per second; 48,000 left: 48 s
    assert line == "progress: 12/60 rounds (20%), 1,000 trajectory-iterations/s, ETA 48 s (elapsed 10 s)"
    slow = progress_line(now, iterations_at_start=2_000, elapsed_s=100.0)
    assert slow.endswith(", 100 trajectory-iterations/s, ETA 8 min (elapsed 2 min)")


def test_line_before_the_first_round_and_when_done():
    start = Tally(0, 60, 0, 60_000)
    assert (
        progress_line(start, 0, 0.0) == "progress: 0/60 rounds (0%), rate and ETA after the first round (elapsed 0 s)"
    )
    resumed = Tally(30, 60, 30_000, 60_000)  # an earlier driver's rounds are done, not fast
    assert "after the first round" in progress_line(resumed, 30_000, 40.0)
    assert (
        progress_line(Tally(60, 60, 60_000, 60_000), 0, 7200.0) == "progress: 60/60 rounds (100%), done (elapsed 2.0 h)"
    )


def test_duration():
    assert [duration(s) for s in (0, 89, 90, 3600, 5399, 5400, 36000)] == [
        "0 s",
        "89 s",
        "2 min",
        "60 min",
        "90 min",
        "1.5 h",
        "10.0 h",
    ]


def test_cohort_work_counts_baselines_from_round_one_and_late_rewinding_from_k():
    ticket = from_preset("lenet", iterations=1000, rounds=3, rewind_iteration=100)
    reinit = ticket.replace(method="reinit")  # no dense round; starts fresh at 0
    rounds, iterations = cohort_work([ticket, reinit])
    assert rounds == 4 + 3
    assert iterations == (1000 + 3 * 900) + 3 * 1000


def test_trial_tally_is_pro_rata_and_capped():
    assert trial_tally(10, 5000, 4) == Tally(4, 10, 2000, 5000)
    assert trial_tally(10, 5000, 12) == Tally(10, 10, 5000, 5000)


def fake_trial(trial_id, cohort, status="RUNNING", rounds_done=None):
    result = {} if rounds_done is None else {"rounds_done": rounds_done}
    return SimpleNamespace(
        trial_id=trial_id, config={"cohort": [c.to_dict() for c in cohort]}, status=status, last_result=result
    )


def test_callback_prints_at_first_step_then_every_30_s_of_its_clock():
    t = [1000.0]
    lines = []
    cb = ProgressCallback(clock=lambda: t[0], out=lines.append)
    member = from_preset("lenet", iterations=100, rounds=4)  # 5 rounds of 100 iterations
    trials = [fake_trial("a", [member]), fake_trial("b", [member, member.replace(seed=1)])]
    cb.on_step_end(0, trials)
    assert lines == ["progress: 0/15 rounds (0%), rate and ETA after the first round (elapsed 0 s)"]
    t[0] += 29.9
    trials[0].last_result = {"rounds_done": 3}
    cb.on_step_end(1, trials)
    assert len(lines) == 1  # throttled
    t[0] += 0.1
    cb.on_step_end(2, trials)
    assert lines[-1] == "progress: 3/15 rounds (20%), 10 trajectory-iterations/s, ETA 2 min (elapsed 30 s)"
    trials[0].status = "TERMINATED"  # a diverged member stopped early: nothing left to run in that trial
    trials[1].last_result = {"rounds_done": 10}
    t[0] += 30
    cb.on_experiment_end(trials)
    assert lines[-1] == "progress: 15/15 rounds (100%), done (elapsed 60 s)"


def test_callback_waits_for_trials_and_reads_pre_cohort_trials():
    lines = []
    cb = ProgressCallback(clock=lambda: 0.0, out=lines.append)
    cb.on_step_end(0, [])
    assert lines == []
    member = from_preset("lenet", iterations=100, rounds=1)
    old = SimpleNamespace(trial_id="x", config={"trajectory": member.to_dict()}, status="PENDING", last_result=None)
    cb.on_step_end(1, [old])
    assert lines == ["progress: 0/2 rounds (0%), rate and ETA after the first round (elapsed 0 s)"]
