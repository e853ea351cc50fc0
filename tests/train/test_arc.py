import numpy as np
import pytest
from trm_fast.data.dihedral import dihedral
from trm_fast.evaluate.arc import ArcVotes, crop, grid_key, undo_augmentation

from _trainutil import augment, encode


def test_crop_finds_the_top_left_answer():
    g = np.arange(12).reshape(3, 4) % 10
    assert np.array_equal(crop(encode(g)), g)
    assert np.array_equal(crop(encode(np.full((30, 30), 7))), np.full((30, 30), 7))
    tokens = encode(g).reshape(30, 30).copy()
    tokens[1, 2] = 1  # a stray EOS in row 1: 3 rows x 2 columns (area 6) beat 1 row x 4
    assert np.array_equal(crop(tokens.ravel()), g[:, :2])
    tokens[2, 0] = 0  # and now row 0 alone (area 4) beats 2 x 2
    assert np.array_equal(crop(tokens.ravel()), g[:1])
    assert crop(np.zeros(900, np.int32)).shape == (0, 0)


@pytest.mark.parametrize("k", range(8))
def test_undo_augmentation_inverts_every_symmetry_and_recolouring(k):
    rng = np.random.default_rng(k)
    grid = rng.integers(0, 10, (3, 5)).astype(np.uint8)
    perm = np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)
    name, undo = undo_augmentation(f"abc123|||t{k}|||{''.join(map(str, perm))}")
    assert name == "abc123"
    assert np.array_equal(undo(augment(grid, k, perm)), grid)
    assert undo_augmentation("plain")[0] == "plain"


def _vote(votes, pid, inp, pred, q):
    votes.add(np.array([pid]), encode(inp)[None], encode(pred)[None], np.array([q], np.float32))


def test_votes_rank_by_count_then_confidence_and_score_pass_at_k():
    names = ["<blank>", "p", "p|||t0|||0123456789", "p|||t2|||0123456789", "q"]
    inp, a, b = [[1, 2]], [[3, 3]], [[4, 4]]
    votes = ArcVotes(names, blank_identifier_id=0)
    _vote(votes, 1, inp, a, 0.0)
    _vote(votes, 2, inp, a, -1.0)
    flipped = dihedral(np.array(b), 2)  # the t2 copy sees the answer rotated by 180 degrees
    _vote(votes, 3, dihedral(np.array(inp), 2), flipped, 3.0)
    _vote(votes, 0, inp, b, 9.0)  # padding: ignored
    _vote(votes, 4, [[5]], b, 0.0)
    _vote(votes, 4, [[5]], a, 1.0)  # one vote each: the more confident grid first
    puzzles = {"p": {"test": [{"input": inp, "output": b}]}, "q": {"test": [{"input": [[5]], "output": b}]},
               "r": {"test": [{"input": [[9]], "output": [[9]]}]}}
    metrics, submission = votes.score(puzzles, pass_ks=(1, 2), submission_k=2)
    assert metrics == {"ARC/pass@1": 0.0, "ARC/pass@2": pytest.approx(2 / 3)}
    assert submission["p"] == [{"attempt_1": a, "attempt_2": b}]
    assert submission["q"] == [{"attempt_1": a, "attempt_2": b}]
    assert submission["r"] == [{"attempt_1": [[0]], "attempt_2": [[0]]}]  # no prediction: a placeholder


def test_votes_survive_a_checkpoint_round_trip_and_merge():
    names = ["<blank>", "p"]
    one, two = ArcVotes(names, 0), ArcVotes(names, 0)
    _vote(one, 1, [[1]], [[2]], 0.0)
    _vote(two, 1, [[1]], [[2]], 2.0)
    _vote(two, 1, [[1]], [[3]], 0.0)
    copy = ArcVotes(names, 0)
    copy.load_state_dict(one.state_dict())
    copy.merge(two)
    tally = copy.votes[("p", grid_key(np.array([[1]])))]
    two, three = grid_key(np.array([[2]])), grid_key(np.array([[3]]))
    assert list(tally) == [two, three] and tally[three] == [1, 0.5]
    count, q_sum = copy.votes[("p", grid_key(np.array([[1]])))][grid_key(np.array([[2]]))]
    assert count == 2 and q_sum == pytest.approx(0.5 + 1 / (1 + np.exp(-2.0)))
    with pytest.raises(ValueError, match="puzzle identifier 7 is not in identifiers.json"):
        _vote(one, 7, [[1]], [[2]], 0.0)
