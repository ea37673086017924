"""The wire format: round trips, signatures, replays, and hostile input that must be refused cheaply."""

import time

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from propdreamer.server.wire import Message, ProtocolError, ReplayGuard, WireLimits, decode, encode

KEY = b"k" * 32


def test_round_trip_keeps_header_body_and_buffers():
    m = Message("submit", {"prompt": "a red cube", "options": {"seed": 3}}, [b"\x00" * 10], client="c1", seq=4)
    out = decode(encode(m))
    assert (out.type, out.body, out.buffers, out.client, out.seq, out.id) == ("submit", m.body, m.buffers, "c1", 4, m.id)


def test_signed_messages_verify_and_forgeries_fail_before_decoding():
    frames = encode(Message("hello", {}, client="c", seq=1), key=KEY)
    assert decode(frames, key=KEY).type == "hello"
    with pytest.raises(ProtocolError) as err:
        decode(encode(Message("hello", {}), key=b"wrong" * 8), key=KEY)
    assert err.value.code == "bad_signature"
    tampered = list(frames)
    tampered[2] = msgpack.packb({"evil": True})
    with pytest.raises(ProtocolError, match="signature"):
        decode(tampered, key=KEY)
    with pytest.raises(ProtocolError) as err:
        decode(encode(Message("hello", {})), key=KEY)  # unsigned to a keyed server
    assert err.value.code in ("unsigned", "bad_signature")
    # frame boundaries are signed: moving bytes between frames breaks the signature
    moved = [frames[0], frames[1] + frames[2][:1], frames[2][1:]]
    with pytest.raises(ProtocolError):
        decode(moved, key=KEY)


def test_replays_are_rejected():
    guard = ReplayGuard()
    frames = encode(Message("status", {}, client="c", seq=7), key=KEY)
    decode(frames, key=KEY, replay=guard)
    with pytest.raises(ProtocolError) as err:
        decode(frames, key=KEY, replay=guard)
    assert err.value.code == "replayed"
    old = encode(Message("status", {}, client="c", seq=8, ts=time.time() - 3600), key=KEY)
    with pytest.raises(ProtocolError, match="clock"):
        decode(old, key=KEY, replay=guard)


def _raw(header: dict | bytes, body: bytes) -> list[bytes]:
    h = header if isinstance(header, bytes) else msgpack.packb(header)
    return [h, body]


GOOD_HEADER = {"v": "1.0", "type": "hello", "id": "x", "client": "c", "seq": 0, "ts": 0.0}


@pytest.mark.parametrize(
    "frames, code",
    [
        ([b"x" * 100] * 20, "too_many_frames"),
        ([msgpack.packb(GOOD_HEADER)], "too_few_frames"),
        (_raw(GOOD_HEADER, b"\xdf\xff\xff\xff\xff"), "bad_msgpack"),  # a map claiming 4 billion entries
        (_raw(GOOD_HEADER, b"\xdd\xff\xff\xff\xff"), "bad_msgpack"),  # an array claiming 4 billion items
        (_raw(GOOD_HEADER, b"\x91" * 5000 + b"\xc0"), "bad_msgpack"),  # nesting deeper than the unpacker's stack
        (_raw(GOOD_HEADER, msgpack.packb({"a": [[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]})), "too_deep"),
        (_raw(GOOD_HEADER, b"\x81\xa1a\xa2\xff\xfe"), "bad_msgpack"),  # invalid UTF-8 in a string
        (_raw(GOOD_HEADER, msgpack.packb([1, 2])), "bad_msgpack"),  # body is not a map
        (_raw(GOOD_HEADER, msgpack.packb({1: 2})), "bad_msgpack"),  # non-string keys
        (_raw(GOOD_HEADER, msgpack.packb({"blob": b"\x00" * 10}, use_bin_type=True)), "bad_msgpack"),  # bin in body
        (_raw(GOOD_HEADER, msgpack.packb({"x": msgpack.ExtType(1, b"hi")})), "bad_msgpack"),  # extension type
        (_raw({**GOOD_HEADER, "seq": "1"}, msgpack.packb({})), "bad_header"),  # wrong type
        (_raw({k: v for k, v in GOOD_HEADER.items() if k != "type"}, msgpack.packb({})), "bad_header"),  # missing
        (_raw({**GOOD_HEADER, "v": "2.0"}, msgpack.packb({})), "version_mismatch"),
        (_raw(b"\x81\xa1v" + b"\xd9\xff" + b"a" * 300, msgpack.packb({})), "bad_msgpack"),  # truncated header
        ([msgpack.packb(GOOD_HEADER), b"\x80" + b"\x00" * (2**20 + 1)], "frame_too_large"),
    ],
)
def test_hostile_input_is_refused_with_a_reason(frames, code):
    with pytest.raises(ProtocolError) as err:
        decode(frames)
    assert err.value.code == code
    assert str(err.value)  # a sentence for the client


def test_per_frame_cap():
    limits = WireLimits(max_frame_bytes=1000)
    with pytest.raises(ProtocolError) as err:
        decode([msgpack.packb(GOOD_HEADER), msgpack.packb({}), b"\x00" * 1001], limits=limits)
    assert err.value.code == "frame_too_large"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=0, max_size=5))
def test_fuzz_decoder_only_ever_raises_protocol_error(frames):
    try:
        decode(frames)
    except ProtocolError:
        pass


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )
)
def test_fuzz_valid_bodies_round_trip(value):
    body = {"value": value}
    assert decode(encode(Message("x", body))).body == body
