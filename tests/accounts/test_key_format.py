"""The API key format, property-based: random, checksummed, recognisable, hashed with a pepper."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from timo_hub.accounts import key_format

BODY_START = len(key_format.PREFIX)
TAIL = key_format.BODY_LENGTH + key_format.CHECKSUM_LENGTH

generated = st.builds(lambda _: key_format.generate("pepper").secret, st.integers())


@given(generated)
def test_generated_keys_are_well_formed_and_match_the_published_pattern(secret: str) -> None:
    assert key_format.is_well_formed(secret)
    assert key_format.PATTERN.fullmatch(secret)
    assert len(secret) == len(key_format.PREFIX) + TAIL
    assert key_format.display_prefix(secret) == secret[: len(key_format.PREFIX) + 4]


@given(generated, st.integers(0, TAIL - 1), st.sampled_from(key_format.ALPHABET))
def test_any_single_character_change_is_refused(secret: str, offset: int, char: str) -> None:
    position = BODY_START + offset
    mutated = secret[:position] + char + secret[position + 1 :]
    assert key_format.is_well_formed(mutated) == (mutated == secret)


@given(generated, st.integers(0, key_format.BODY_LENGTH - 2))
def test_swapping_neighbours_in_the_body_is_refused(secret: str, offset: int) -> None:
    i = BODY_START + offset
    swapped = secret[:i] + secret[i + 1] + secret[i] + secret[i + 2 :]
    assert key_format.is_well_formed(swapped) == (swapped == secret)


@given(generated)
def test_truncated_or_extended_keys_are_refused(secret: str) -> None:
    assert not key_format.is_well_formed(secret[:-1])
    assert not key_format.is_well_formed(secret + "0")
    assert not key_format.is_well_formed(secret.replace("timo_live_", "timo_test_"))


@given(st.text(max_size=200))
def test_arbitrary_text_is_judged_without_error(candidate: str) -> None:
    # Random text is never a key (its checksum would have to match by chance), and redaction
    # leaves text that holds nothing key-shaped exactly as it was.
    assert key_format.is_well_formed(candidate) is False
    if "timo_live_" not in candidate:
        assert key_format.redact(candidate) == candidate


@given(generated, st.text(max_size=40), st.text(max_size=40), st.integers(8, 38))
def test_a_key_whole_or_cut_is_redacted_wherever_it_sits(
    secret: str, before: str, after: str, kept: int
) -> None:
    # Guards the key reaching logs and echoed paths; `after` is not a key character, so the
    # key-shaped run ends where the key does.
    after = "/" + after
    for shown in (secret, secret[: len("timo_live_") + kept]):
        text = key_format.redact(before + shown + after)
        assert shown[len("timo_live_") :] not in text
        assert text.endswith(key_format.display_prefix(shown) + "[redacted]" + after)
        assert key_format.contains_key_like(before + shown + after)


@given(generated, st.text(min_size=1, max_size=64), st.text(min_size=1, max_size=64))
def test_the_stored_hash_depends_on_key_and_pepper(secret: str, pepper: str, other: str) -> None:
    digest = key_format.hash_key(secret, pepper)
    assert len(digest) == 32
    assert digest == key_format.hash_key(secret, pepper)
    assert secret.encode() not in digest
    if other != pepper:
        assert key_format.hash_key(secret, other) != digest
    # The request path's hasher (a copied HMAC state) stores and finds the same value.
    hasher = key_format.KeyHasher(pepper)
    assert hasher(secret) == digest == hasher(secret)


def test_keys_carry_at_least_160_bits_of_randomness() -> None:
    import math

    assert key_format.BODY_LENGTH * math.log2(len(key_format.ALPHABET)) >= 160
    assert len({key_format.generate("p").secret for _ in range(1000)}) == 1000
