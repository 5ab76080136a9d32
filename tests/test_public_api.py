import gpuptc


def test_public_names_exist_and_are_documented():
    for name in gpuptc.__all__:
        obj = getattr(gpuptc, name)
        if callable(obj):
            assert obj.__doc__, name
