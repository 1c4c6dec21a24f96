import numpy as np
import pytest

from cellcount_core.counts.metrics import DetectionScores, centroids, count_errors, match_detections


def test_centroids_of_non_consecutive_labels_in_label_order():
    labels = np.zeros((10, 10), np.int32)
    labels[1:4, 1:4] = 7  # centre (2, 2)
    labels[6, 2:9] = 3  # centre (6, 5)
    np.testing.assert_allclose(centroids(labels), [[6, 5], [2, 2]])
    assert centroids(np.zeros((4, 4), int)).shape == (0, 2)


def test_centroids_reject_float_images():
    with pytest.raises(ValueError, match="integer label image"):
        centroids(np.zeros((4, 4)))


def test_optimal_assignment_beats_greedy_nearest_matching():
    true = np.array([[0.0, 0.0], [0.0, 4.0]])
    predicted = np.array([[0.0, 2.5], [0.0, 7.0]])
    # greedy would pair the closest (true 1, predicted 0) first and leave true 0 unmatched
    scores = match_detections(true, predicted, radius=3.0)
    assert (scores.tp, scores.fp, scores.fn) == (2, 0, 0)
    assert scores.pairs.tolist() == [[0, 0], [1, 1]]
    assert scores.f1 == 1.0 and scores.accuracy == 1.0


def test_pairs_beyond_radius_never_match_and_scores_follow():
    true = np.array([[0.0, 0.0], [10.0, 10.0], [20.0, 20.0]])
    predicted = np.array([[1.0, 0.0], [10.0, 14.5]])
    scores = match_detections(true, predicted, radius=4.0)
    assert (scores.tp, scores.fp, scores.fn) == (1, 1, 2)
    assert scores.precision == pytest.approx(0.5)
    assert scores.recall == pytest.approx(1 / 3)
    assert scores.f1 == pytest.approx(0.4)
    assert scores.accuracy == pytest.approx(0.25)


def test_label_images_are_matched_by_their_centroids():
    true = np.zeros((20, 20), np.int32)
    true[2:5, 2:5] = 1
    true[12:16, 12:16] = 2
    predicted = np.zeros((20, 20), np.int32)
    predicted[3:6, 3:6] = 5
    scores = match_detections(true, predicted, radius=3)
    assert (scores.tp, scores.fp, scores.fn) == (1, 0, 1)


def test_empty_cases():
    none = np.zeros((0, 2))
    some = np.array([[1.0, 1.0]])
    assert match_detections(none, none, 5) == DetectionScores(0, 0, 0, 1.0, 1.0, 1.0, 1.0)
    missed = match_detections(some, none, 5)
    assert (missed.tp, missed.fn, missed.precision, missed.recall, missed.f1) == (0, 1, 0.0, 0.0, 0.0)
    spurious = match_detections(none, some, 5)
    assert (spurious.fp, spurious.precision, spurious.accuracy) == (1, 0.0, 0.0)


def test_bad_match_inputs():
    with pytest.raises(ValueError, match="radius"):
        match_detections(np.zeros((1, 2)), np.zeros((1, 2)), 0)
    with pytest.raises(ValueError, match="predicted"):
        match_detections(np.zeros((1, 2)), np.zeros((3, 3, 3)), 1)


def test_count_errors_hand_computed():
    errors = count_errors([10, 20, 50, 100], [12, 18, 50, 90])
    assert errors["mae"] == pytest.approx(3.5)  # |2|, |-2|, 0, |-10|
    assert errors["medae"] == pytest.approx(2.0)
    assert errors["mpe"] == pytest.approx((20 - 10 + 0 - 10) / 4)
    assert errors["mape"] == pytest.approx((20 + 10 + 0 + 10) / 4)


def test_count_errors_zero_true_count_names_the_index():
    with pytest.raises(ValueError, match="index 1"):
        count_errors([3, 0, 2], [3, 1, 2])


def test_count_errors_length_mismatch():
    with pytest.raises(ValueError, match="as many"):
        count_errors([1, 2], [1])
