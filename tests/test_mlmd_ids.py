"""Ids of imported MLMD nodes and events: deterministic, distinct, in runs of 16
consecutive MLMD ids (what keeps an import's index writes together), and told apart by
their first ten characters (what keeps short ids short)."""

from __future__ import annotations

from metatrail.consumer.mlmd.ids import SourceIds

KINDS = ("artifact", "execution", "context")


def test_ids_are_deterministic_and_per_store() -> None:
    one, again, other = SourceIds("store-a"), SourceIds("store-a"), SourceIds("store-b")
    for kind in KINDS:
        for mlmd_id in (1, 17, 2**40, -3):
            assert one.node(kind, mlmd_id) == again.node(kind, mlmd_id)
            assert one.node(kind, mlmd_id) != other.node(kind, mlmd_id)
    assert one.event("artifact", 5, ((5, "uri"), [])) == again.event("artifact", 5, ((5, "uri"), []))


def test_ids_are_distinct_uuid8() -> None:
    ids = SourceIds("store")
    made = [ids.node(kind, i) for kind in KINDS for i in range(-50, 5000)]
    assert len(set(made)) == len(made)
    assert {u.version for u in made} == {8}
    assert {u.variant for u in made} == {"specified in RFC 4122"}


def test_an_event_id_follows_the_rows_it_was_made_from() -> None:
    ids = SourceIds("store")
    assert ids.event("artifact", 5, ((5, "a"),)) != ids.event("artifact", 5, ((5, "b"),))
    assert ids.event("artifact", 5, ((5, "a"),)) != ids.event("execution", 5, ((5, "a"),))


def test_runs_of_16_share_a_head_and_ten_characters_tell_ids_apart() -> None:
    ids = SourceIds("store")
    texts = [str(ids.node("artifact", i)) for i in range(32, 48)]
    assert {t[:8] for t in texts[:16]} == {texts[0][:8]}
    assert sorted(texts) == texts  # in MLMD id order within the run
    assert str(ids.node("artifact", 48))[:8] != texts[0][:8]
    prefixes = [str(ids.node(kind, i))[:10] for kind in KINDS for i in range(5000)]
    assert len(set(prefixes)) > 0.99 * len(prefixes)
