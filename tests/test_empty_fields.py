"""Objects of photon noise erased, cells kept (`cellcount_core.running.empty_fields`)."""

import numpy as np

from cellcount_core.running.empty_fields import is_featureless_field, without_featureless_objects

NORMALIZATION = (1.0, 99.8, 40)  # the bundled cards' percentiles and noise floor


def photons_and_a_nucleus():
    """A dark 8-bit field of single photons (1-13 grey levels) and one nucleus of 7 px, with a map that marks
    every bright pixel."""
    rng = np.random.default_rng(3)
    image = np.where(rng.random((120, 120)) < 0.03, rng.integers(1, 14, (120, 120)), 0).astype(np.uint8)
    yy, xx = np.mgrid[:120, :120]
    image[(yy - 60) ** 2 + (xx - 30) ** 2 <= 12] = 60
    probability = (image > 0).astype(np.float32)
    return image, probability, (yy - 60) ** 2 + (xx - 30) ** 2 <= 12


def test_specks_are_erased_and_the_nucleus_is_kept():
    image, probability, nucleus = photons_and_a_nucleus()
    cleaned = without_featureless_objects(image, probability, NORMALIZATION, 0.1)
    assert cleaned[nucleus].all()
    assert not cleaned[~nucleus].any()
    assert probability[~nucleus].sum() > 300  # there were specks to erase


def test_a_field_is_featureless_only_without_the_nucleus():
    image, _, nucleus = photons_and_a_nucleus()
    assert not is_featureless_field(image, NORMALIZATION)
    image[nucleus] = 0
    assert is_featureless_field(image, NORMALIZATION)


def test_without_a_noise_floor_nothing_changes():
    image, probability, _ = photons_and_a_nucleus()
    assert not is_featureless_field(image, (1.0, 99.8, None))
    assert without_featureless_objects(image, probability, (1.0, 99.8, None), 0.1) is probability
