"""containerd filter syntax: parsing and matching."""

import pytest

from layerfs import Info, Kind, errors
from layerfs._filters import compile_filters, parse

INFO = Info("web", "base", Kind.ACTIVE, {"env": "prod", "a.b": "x", "empty": ""})


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ((), True),
        (("kind==active",), True),
        (("kind==view",), False),
        (("name==web",), True),
        (("parent==base",), True),
        (("labels.env",), True),
        (("labels.missing",), False),
        (("labels.empty",), False),
        (("labels.env==prod",), True),
        (('labels."a.b"==x',), True),
        (("labels.'a.b'==x",), True),
        (('labels.env=="prod"',), True),
        (("labels.env!=prod",), False),
        (("labels.missing!=prod",), True),
        (("name~=^w.b$",), True),
        (("kind==view", "name==web"), True),
        (("kind==active,name==other",), False),
        (("kind == active , name == web",), True),
    ],
)
def test_matching(filters: tuple[str, ...], expected: bool) -> None:
    assert compile_filters(filters)(INFO) is expected


@pytest.mark.parametrize(
    "bad", ["", "kind=", "size==1", "labels.x==", 'labels."open==x', "name~=[", "kind==a b c,"]
)
def test_malformed_filters_raise(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        parse(bad)


def test_parse_quoted_segments() -> None:
    (sel,) = parse('labels."com.example.x"==v')
    assert sel.path == ("labels", "com.example.x")
    assert sel.op == "==" and sel.value == "v"
