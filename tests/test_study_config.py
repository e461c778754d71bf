"""A study's configuration (invfeat/study/config.py): its protections, readings and protected
reconstructions are checked when it is made."""

import dataclasses

import pytest

from experiments.configs import get_study


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("protections", ("static", "static")),
        ("protections", ("rot13",)),
        ("readings", ()),
        ("readings", ("bits", "bits")),
        ("readings", ("octal",)),
        ("protected_reconstructions", ("diffusion",)),
    ],
)
def test_protections_and_readings_are_checked(field, names):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(get_study("tiny"), **{field: names})


def test_a_study_of_plaintext_alone_needs_no_reading():
    config = dataclasses.replace(get_study("tiny"), protections=(), readings=())
    assert config.protections == ()
