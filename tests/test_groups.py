import pytest

from streamer.groups import sole_error, unwrapped_groups


def test_sole_error_when_one_leaf_in_nested_groups_is_that_leaf():
    leaf = ValueError("v")
    assert sole_error(ExceptionGroup("outer", [ExceptionGroup("inner", [leaf])])) is leaf


def test_sole_error_when_several_leaves_is_the_group():
    group = ExceptionGroup("outer", [ValueError("a"), KeyError("b")])
    assert sole_error(group) is group


def test_unwrapped_groups_when_one_error_raises_it_with_its_cause():
    cause = OSError("disk")
    leaf = RuntimeError("write failed")
    leaf.__cause__ = cause
    with pytest.raises(RuntimeError) as caught:
        with unwrapped_groups():
            raise ExceptionGroup("tasks", [leaf])
    assert caught.value is leaf and caught.value.__cause__ is cause


def test_unwrapped_groups_when_several_errors_raises_the_group():
    with pytest.raises(ExceptionGroup):
        with unwrapped_groups():
            raise ExceptionGroup("tasks", [ValueError("a"), KeyError("b")])
