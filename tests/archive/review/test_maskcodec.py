import numpy as np
import pytest

from archive.review.maskcodec import pack_mask, unpack_mask


def test_pack_unpack_round_trip_any_shape() -> None:
    rng = np.random.default_rng(1)
    mask = rng.random((2, 3, 11)) > 0.5
    data = pack_mask(mask)
    assert data.isascii()
    np.testing.assert_array_equal(unpack_mask(data, (2, 3, 11)), mask)


def test_unpack_rejects_damaged_text_and_wrong_shape() -> None:
    data = pack_mask(np.ones((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="base64"):
        unpack_mask("***", (4, 4))
    with pytest.raises(ValueError, match="packed bytes"):
        unpack_mask(data, (40, 4))
