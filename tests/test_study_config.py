"""A study's configuration (invfeat/study/config.py): its ciphertext encodings are checked when
it is made."""

import dataclasses

import pytest

from experiments.configs import get_study


@pytest.mark.parametrize("encodings", [(), ("bits", "bits"), ("bits", "octal")])
def test_ciphertext_encodings_are_checked(encodings):
    with pytest.raises(ValueError, match="ciphertext_encodings"):
        dataclasses.replace(get_study("tiny"), ciphertext_encodings=encodings)
