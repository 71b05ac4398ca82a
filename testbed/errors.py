"""The testbed's one exception hierarchy; callers catch `TestbedError`."""


class TestbedError(Exception):
    """Something the testbed was asked to do could not be done."""

    __test__ = False  # not a test class, though pytest collects names starting with "Test"


class PrerequisiteError(TestbedError):
    """The machine lacks what the testbed needs (root, a program)."""
