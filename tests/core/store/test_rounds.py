"""Round files and small checkpoints, without Ray: each round written once, a checkpoint that does not grow,
and resuming after a torn, deleted or unregistered round, bitwise on the CPU."""

from __future__ import annotations

import io

import pytest
import torch
from rounds_helpers import early_stop, masks, run_all, trained

from lth_ray.core.engine.trajectory import Trajectory
from lth_ray.core.options.resolve import from_preset
from lth_ray.core.pruning.masks import unpack_masks
from lth_ray.core.store.resume import resume_state
from lth_ray.core.store.rounds import RoundStore
from lth_ray.results.experiment import StoredRounds


def small(**kw):
    return from_preset("lenet", dataset="mnist", **{**dict(iterations=40, eval_every=20, rounds=3), **kw})


def nbytes(obj) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return len(buf.getvalue())


def histories(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def write_all(trajectory, store):
    out = []
    for result in trajectory.run_results():
        store.write_round(result)
        out.append(result.record)
    return out


@pytest.mark.parametrize(
    "arch, kw",
    [
        ("lenet", {}),
        ("lenet", dict(rewind_iteration=20)),
        ("lenet", dict(method="one-shot")),
        pytest.param("conv2", dict(rewind_iteration=1), marks=pytest.mark.e2e),
    ],
)
def test_checkpoint_size_does_not_grow_with_the_round(arch, kw, split, cifar_split):
    data = cifar_split if arch == "conv2" else split
    extra = dict(iterations=2, eval_every=1) if arch == "conv2" else {}
    t = Trajectory(
        from_preset(arch, dataset=data.dataset, rounds=6, **{**dict(iterations=40, eval_every=20), **extra, **kw}), data
    )
    sizes = []
    for _ in t.run_results():
        sizes.append(nbytes(t.state))
    assert sizes[-1] <= 1.25 * sizes[1], sizes  # round 6's checkpoint vs round 1's
    assert set(t.state) == {
        "format",
        "config",
        "next_round",
        "diverged_round",
        "rewind",
        "masks",
        "trained",
        "dense_trained",
    }


def test_a_round_is_written_once_and_read_back_exactly(split, tmp_path):
    store = RoundStore.at(str(tmp_path / "rounds"))
    results = run_all(Trajectory(small(rounds=2), split))
    for r in sorted(results):
        store.write_round(results[r])
    assert store.round_numbers() == [0, 1, 2] and store.complete_prefix(0) == [0, 1, 2]
    for r, res in results.items():
        assert store.record(r) == res.record
        assert all(torch.equal(store.masks(r)[n], m) for n, m in masks(res).items())
        assert all(torch.equal(store.trained(r)[k], v) for k, v in trained(res).items())
        assert all(torch.equal(store.early_stop(r)[k], v) for k, v in early_stop(res).items())
    # compact on disk: a pruned round's trained weights take about its density of the dense bytes
    dense = (tmp_path / "rounds" / "round_000" / "trained.pt").stat().st_size
    pruned = (tmp_path / "rounds" / "round_002" / "trained.pt").stat().st_size
    assert pruned < 0.7 * dense
    assert store.rewind() is None  # no late rewinding: the init is rebuilt from the seed, never stored
    names = {p.name for p in (tmp_path / "rounds").rglob("*")}
    assert not any(".tmp-" in n for n in names)  # no temporary file is left behind


def test_reading_one_rounds_mask_loads_nothing_else(split, tmp_path):
    store = RoundStore.at(str(tmp_path / "rounds"))
    write_all(Trajectory(small(rounds=2), split), store)
    for other in ("round_000", "round_002"):
        for f in (tmp_path / "rounds" / other).iterdir():
            f.write_bytes(b"garbage")  # any read of another round would now fail
    assert set(store.masks(1)) == {"fc.0", "fc.2", "out"} and store.early_stop(1) is not None


def test_a_round_torn_by_a_crash_is_recomputed_bitwise(split, tmp_path, monkeypatch):
    cfg = small()
    undisturbed = write_all(Trajectory(cfg, split), RoundStore.at(str(tmp_path / "whole")))
    store = RoundStore.at(str(tmp_path / "rounds"))
    t = Trajectory(cfg, split)
    store.write_round(t.run_round())
    store.write_round(t.run_round())
    checkpoint = dict(t.state)
    real_put, calls = RoundStore._put, []

    def crash_after_the_masks(self, path, data):
        calls.append(path)
        real_put(self, path, data)
        if path.endswith("masks.pt"):
            raise KeyboardInterrupt("worker killed while writing round 2")

    monkeypatch.setattr(RoundStore, "_put", crash_after_the_masks)
    with pytest.raises(KeyboardInterrupt):
        store.write_round(t.run_round())
    monkeypatch.setattr(RoundStore, "_put", real_put)
    assert store.problem(2) and store.complete_prefix(0) == [0, 1]
    state = resume_state(cfg, store, checkpoint)
    assert state["next_round"] == 2
    resumed = Trajectory(cfg, split, state)
    write_all(resumed, store)
    assert histories(StoredRounds(store).records()) == histories(undisturbed)


def test_a_deleted_round_file_is_recomputed_with_the_rounds_after_it(split, tmp_path):
    cfg = small(rewind_iteration=20)
    store = RoundStore.at(str(tmp_path / "rounds"))
    t = Trajectory(cfg, split)
    undisturbed = write_all(t, store)
    (tmp_path / "rounds" / "round_001" / "trained.pt").unlink()
    assert store.problem(1) == "round 1: trained.pt is missing"
    state = resume_state(cfg, store, t.state)  # the checkpoint says "done"; the files say round 1 is lost
    assert state["next_round"] == 1
    again = write_all(Trajectory(cfg, split, state), store)
    assert histories(again) == histories(undisturbed[1:])
    assert store.complete_prefix(0) == [0, 1, 2, 3]


def test_rounds_finished_after_the_last_checkpoint_are_kept(split, tmp_path):
    """A worker that wrote a round's files but died before Tune registered its checkpoint loses nothing."""
    cfg = small()
    store = RoundStore.at(str(tmp_path / "rounds"))
    t = Trajectory(cfg, split)
    store.write_round(t.run_round())
    old_checkpoint = dict(t.state)
    store.write_round(t.run_round())
    state = resume_state(cfg, store, old_checkpoint)
    assert state["next_round"] == 2
    assert unpack_masks(state["masks"])["fc.0"].equal(unpack_masks(t.state["masks"])["fc.0"])
    assert all(torch.equal(state["trained"][k], v) for k, v in t.state["trained"].items())


def test_a_diverged_round_resumes_as_finished(split, tmp_path):
    cfg = small(learning_rate=1e11)
    store = RoundStore.at(str(tmp_path / "rounds"))
    write_all(Trajectory(cfg, split), store)
    state = resume_state(cfg, store, None)
    assert state["diverged_round"] == 0 and Trajectory(cfg, split, state).done


def test_an_old_format_state_is_refused_with_its_version(split):
    old = {"format": 1, "config": small().to_dict(), "next_round": 1, "records": []}
    with pytest.raises(ValueError, match=r"format 1 \(lth_ray 0.1.0\).*finish it with lth_ray 0.1.0"):
        Trajectory(small(), split, old)


def test_round_store_on_a_file_uri(split, tmp_path):
    store = RoundStore.at(f"file://{tmp_path}/uri/rounds")
    write_all(Trajectory(small(rounds=1), split), store)
    assert RoundStore.at(str(tmp_path / "uri" / "rounds")).complete_prefix(0) == [0, 1]
    assert store.record(1)["round"] == 1 and store.masks(1)["fc.0"].dtype == torch.bool
