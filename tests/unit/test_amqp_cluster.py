"""BRIDGE_AMQP_URL as a list of cluster nodes."""

from __future__ import annotations

import pytest
from yarl import URL

from bridge.adapters.amqp_cluster import node_urls


def test_one_url_is_one_node() -> None:
    assert node_urls("amqp://guest:guest@127.0.0.1:5672/") == [
        URL("amqp://guest:guest@127.0.0.1:5672/")
    ]


def test_nodes_are_separated_by_commas_in_order() -> None:
    urls = node_urls("amqp://u:p@rmq1:5672/x, amqp://u:p@rmq2:5672/x,amqps://u:p@rmq3/x")
    assert [(u.scheme, u.host, u.port, u.path) for u in urls] == [
        ("amqp", "rmq1", 5672, "/x"),
        ("amqp", "rmq2", 5672, "/x"),
        ("amqps", "rmq3", None, "/x"),  # aiormq picks 5671 for amqps
    ]


@pytest.mark.parametrize("value", ["", " , ", "http://rmq1/", "rmq1:5672"])
def test_anything_but_amqp_urls_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        node_urls(value)


def test_a_refused_url_does_not_show_its_password() -> None:
    with pytest.raises(ValueError) as refused:
        node_urls("amqp://u:secret@rmq1/,http://u:secret@rmq2/")
    assert "secret" not in str(refused.value)
