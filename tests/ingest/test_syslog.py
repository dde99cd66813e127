"""Syslog parsing and RFC 6587 framing."""

from __future__ import annotations

import calendar
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.syslog import SyslogStreamFramer, parse_rfc3339_ns, parse_syslog
from ingest.types import DecodeError

NS = 1_000_000_000
# 2026-11-29T03:00:00Z, when these messages "arrive".
RECEIVED = calendar.timegm((2026, 11, 29, 3, 0, 0)) * NS


def utc_ns(*parts: int, frac_ns: int = 0) -> int:
    return calendar.timegm((*parts, 0, 0, 0)[:6]) * NS + frac_ns


def parse(message: bytes, peer: str | None = None):
    return parse_syslog(message, received_ns=RECEIVED, peer=peer)


# --- RFC 5424 (examples from section 6.5) ------------------------------------------


def test_rfc5424_example_1_no_structured_data_with_bom():
    entry = parse(
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8"
    )
    assert entry.ts_ns == utc_ns(2003, 10, 11, 22, 14, 15, frac_ns=3_000_000)
    assert entry.message == "'su root' failed for lonvick on /dev/pts/8"
    assert (entry.severity, entry.severity_text) == (18, "crit")
    assert entry.node == "mymachine.example.com"
    assert entry.source == "syslog"
    assert entry.attributes == {
        "syslog.facility": "auth",
        "syslog.appname": "su",
        "syslog.msgid": "ID47",
    }


def test_rfc5424_example_2_offset_and_microseconds():
    entry = parse(
        b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
        b"%% It's time to make the do-nuts."
    )
    assert entry.ts_ns == utc_ns(2003, 8, 24, 12, 14, 15, frac_ns=3_000)
    assert entry.message == "%% It's time to make the do-nuts."
    assert entry.severity == 10  # notice
    assert entry.attributes["syslog.facility"] == "local4"
    assert entry.attributes["syslog.procid"] == "8710"
    assert "syslog.msgid" not in entry.attributes


def test_rfc5424_example_3_structured_data():
    entry = parse(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] '
        b"\xef\xbb\xbfAn application event log entry..."
    )
    assert entry.message == "An application event log entry..."
    assert entry.attributes["sd.exampleSDID@32473.iut"] == "3"
    assert entry.attributes["sd.exampleSDID@32473.eventSource"] == "Application"
    assert entry.attributes["sd.exampleSDID@32473.eventID"] == "1011"
    assert "sd.exampleSDID@32473" not in entry.attributes
    assert parse(b'<13>1 - h a - - [origin][meta x="1"] m').attributes["sd.origin"] == ""


def test_rfc5424_example_4_two_elements_no_message():
    entry = parse(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
        b'[examplePriority@32473 class="high"]'
    )
    assert entry.message == ""
    assert entry.attributes["sd.examplePriority@32473.class"] == "high"
    assert entry.attributes["sd.exampleSDID@32473.eventID"] == "1011"


def test_logger_rfc5424_format():
    entry = parse(
        b"<13>1 2026-11-29T03:00:00.123456+00:00 myhost root 1234 - "
        b'[timeQuality tzKnown="1" isSynced="0"] hello'
    )
    assert entry.ts_ns == RECEIVED + 123_456_000
    assert entry.message == "hello"
    assert entry.node == "myhost"
    assert (entry.severity, entry.attributes["syslog.facility"]) == (10, "user")
    assert entry.attributes["syslog.appname"] == "root"
    assert entry.attributes["syslog.procid"] == "1234"
    assert entry.attributes["sd.timeQuality.tzKnown"] == "1"
    assert entry.attributes["sd.timeQuality.isSynced"] == "0"


def test_rfc5424_nil_values_escapes_and_peer():
    entry = parse(b'<14>1 - - - - - [a@1 x="q\\"b\\]c\\\\d" x="2"] msg', peer="10.0.0.5")
    assert entry.ts_ns == RECEIVED
    assert entry.node == "10.0.0.5"  # no hostname: the peer stands in
    assert entry.attributes["syslog.peer"] == "10.0.0.5"
    assert entry.attributes["sd.a@1.x"] == 'q"b]c\\d, 2'
    assert entry.message == "msg"
    assert "syslog.appname" not in entry.attributes


def test_rfc5424_malformed_structured_data_is_kept_in_message():
    entry = parse(b'<14>1 2026-11-29T03:00:00Z h app - - [broken x="1 rest')
    assert entry.node == "h"
    assert entry.message == '[broken x="1 rest'


# --- RFC 3164 and what real senders emit -------------------------------------------


def test_rfc3164_example():
    entry = parse(b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8")
    assert entry.ts_ns == utc_ns(2026, 10, 11, 22, 14, 15)
    assert entry.node == "mymachine"
    assert entry.attributes["syslog.appname"] == "su"
    assert entry.message == "'su root' failed for lonvick on /dev/pts/8"
    assert entry.severity == 18


def test_rfc3164_example_without_tag():
    entry = parse(b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!")
    assert entry.ts_ns == utc_ns(2026, 2, 5, 17, 32, 18)
    assert entry.node == "10.0.0.99"
    assert entry.message == "Use the BFG!"


def test_logger_rfc3164_format():
    entry = parse(b"<13>Nov 29 03:00:00 myhost root: hello")
    assert (entry.ts_ns, entry.node, entry.message) == (RECEIVED, "myhost", "hello")
    assert entry.attributes["syslog.appname"] == "root"


def test_rfc3164_without_hostname_and_with_pid():
    entry = parse(b"<86>Nov 29 02:59:58 sshd[4242]: Accepted publickey for ops", peer="node-9")
    assert entry.node == "node-9"
    assert entry.attributes["syslog.appname"] == "sshd"
    assert entry.attributes["syslog.procid"] == "4242"
    assert entry.attributes["syslog.facility"] == "authpriv"
    assert entry.message == "Accepted publickey for ops"


def test_rsyslog_forward_format_with_iso_timestamp():
    entry = parse(b"<30>2026-11-29T02:00:00.5+01:00 web1 postfix/smtpd[99]: connect from x\n")
    assert entry.ts_ns == utc_ns(2026, 11, 29, 1, 0, 0, frac_ns=500_000_000)
    assert entry.node == "web1"
    assert entry.attributes["syslog.appname"] == "postfix/smtpd"
    assert entry.message == "connect from x"


def test_year_inferred_from_arrival():
    # A December line read at the end of November is from last December, not next month.
    entry = parse(b"<13>Dec 31 23:59:59 h app: late")
    assert entry.ts_ns == utc_ns(2025, 12, 31, 23, 59, 59)
    new_year = calendar.timegm((2027, 1, 1, 0, 0, 1)) * NS
    early = parse_syslog(b"<13>Dec 31 23:59:58 h app: x", received_ns=new_year)
    assert early.ts_ns == utc_ns(2026, 12, 31, 23, 59, 58)
    ahead = parse_syslog(b"<13>Jan  1 00:00:03 h app: x", received_ns=new_year)
    assert ahead.ts_ns == utc_ns(2027, 1, 1, 0, 0, 3)


def test_no_pri_is_kept_as_user_notice():
    entry = parse(b"plain text from a misconfigured device\r\n", peer="10.1.1.1")
    assert entry.message == "plain text from a misconfigured device"
    assert (entry.severity, entry.attributes["syslog.facility"]) == (10, "user")
    assert entry.attributes["syslog.pri_missing"] == "true"
    assert entry.ts_ns == RECEIVED and entry.node == "10.1.1.1"


@pytest.mark.parametrize("raw", [b"<999>too big", b"<abc>x", b"<13", b"<>"])
def test_invalid_pri_kept_verbatim(raw):
    entry = parse(raw)
    assert entry.message == raw.decode()
    assert entry.attributes["syslog.pri_missing"] == "true"


def test_invalid_utf8_is_replaced_and_severities():
    assert parse(b"<11>Nov 29 03:00:00 h a: caf\xe9").message == "caf\ufffd"
    levels = [parse(f"<{8 + s}>x".encode()).severity for s in range(8)]
    assert levels == [21, 19, 18, 17, 13, 10, 9, 5]


def test_pri_only_and_bad_timestamp_keep_text():
    assert parse(b"<13>").message == ""
    entry = parse(b"<13>1 2026-13-45T99:00:00Z host app - - - hi")
    assert entry.message == "1 2026-13-45T99:00:00Z host app - - - hi"
    assert parse(b"<13>Feb 30 10:00:00 h a: b").message == "Feb 30 10:00:00 h a: b"


@pytest.mark.parametrize("raw", [b"", b"\n", b"\x00\r\n", b"   "])
def test_empty_input_is_the_only_error(raw):
    with pytest.raises(DecodeError):
        parse(raw)


def test_parse_rfc3339():
    assert parse_rfc3339_ns("1970-01-01T00:00:01.000000001Z") == NS + 1
    assert parse_rfc3339_ns("2026-11-29 03:00:00") == RECEIVED
    assert parse_rfc3339_ns("2026-11-29T03:00:00", require_zone=True) is None
    assert parse_rfc3339_ns("2016-12-31T23:59:60Z") == utc_ns(2016, 12, 31, 23, 59, 59)
    assert parse_rfc3339_ns("2026-02-30T00:00:00Z") is None
    assert parse_rfc3339_ns("yesterday") is None


# --- framing ------------------------------------------------------------------------


def test_octet_counting():
    framer = SyslogStreamFramer()
    msg = b"<13>1 - h a - - - hello\nworld"
    assert framer.feed(b"%d " % len(msg) + msg) == [msg]  # LF inside a counted frame stays


def test_non_transparent_lf_crlf_and_nul():
    framer = SyslogStreamFramer()
    assert framer.feed(b"<13>one\n<13>two\r\n\n<13>three\x00<13>fo") == [
        b"<13>one",
        b"<13>two",
        b"<13>three",
    ]
    assert framer.feed(b"ur\n") == [b"<13>four"]


def test_mixed_framing_on_one_connection():
    framer = SyslogStreamFramer()
    stream = b"9 <13>hello<13>plain\n404 not found\n5 <13>x"
    assert framer.feed(stream) == [b"<13>hello", b"<13>plain", b"404 not found", b"<13>x"]


def test_split_across_feeds_byte_by_byte():
    stream = b"10 <13>abcdef<14>line\n11 <15>1234567"
    framer = SyslogStreamFramer()
    frames = [frame for byte in stream for frame in framer.feed(bytes([byte]))]
    assert frames == [b"<13>abcdef", b"<14>line", b"<15>1234567"]
    assert framer.flush() == []


def test_flush_emits_partial_frames():
    framer = SyslogStreamFramer()
    assert framer.feed(b"<13>no newline yet") == []
    assert framer.flush() == [b"<13>no newline yet"]
    assert framer.feed(b"20 <13>cut") == []
    assert framer.flush() == [b"<13>cut"]


def test_over_long_frames_are_cut_emitted_and_skipped():
    framer = SyslogStreamFramer(max_frame=8)
    assert framer.feed(b"<13>0123456789") == [b"<13>0123"]
    assert framer.feed(b"more of the same line\n<13>ok\n") == [b"<13>ok"]
    assert framer.feed(b"20 <13>abcdefghijklmnop") == [b"<13>abcd"]
    assert framer.feed(b"<14>next\n") == [b"<14>next"]
    assert framer.truncated_frames == 2
    assert len(framer._buf) == 0


FAST = settings(max_examples=200, deadline=None)


@FAST
@given(raw=st.binary(max_size=300))
def test_parse_arbitrary_bytes(raw):
    try:
        entry = parse_syslog(raw, received_ns=RECEIVED, peer="p")
    except DecodeError:
        assert not raw.strip(b" \t\r\n\x00")
        return
    assert entry.source == "syslog" and 1 <= entry.severity <= 24
    assert isinstance(entry.message, str)


syslogish = st.lists(
    st.sampled_from(
        [b"<13>", b"<165>1 ", b"2026-11-29T03:00:00Z ", b"Nov 29 03:00:00 ", b"host ", b"- ",
         b"app[1]: ", b'[id k="v"] ', b"[", b"]", b'"', b"\\", b"\xef\xbb\xbf", b"msg", b"\xff"]
    ),
    max_size=12,
).map(b"".join)  # fmt: skip


@FAST
@given(raw=syslogish)
def test_parse_syslog_shaped_bytes(raw):
    try:
        parse_syslog(raw, received_ns=RECEIVED)
    except DecodeError:
        assert not raw.strip(b" \t\r\n\x00")


@FAST
@given(
    stream=st.binary(max_size=400)
    | st.lists(syslogish | st.just(b"\n"), max_size=10).map(b"".join),
    cuts=st.lists(st.integers(0, 400), max_size=8),
    max_frame=st.integers(1, 64),
)
def test_framer_arbitrary_chunks(stream, cuts, max_frame):
    framer = SyslogStreamFramer(max_frame=max_frame)
    frames = []
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for start, end in itertools.pairwise(points):
        frames += framer.feed(stream[start:end])
        assert len(framer._buf) <= max_frame + 12  # bounded, whatever arrives
    frames += framer.flush()
    assert all(0 < len(frame) <= max_frame for frame in frames)
    # How the stream was cut into reads must not change the messages.
    whole = SyslogStreamFramer(max_frame=max_frame)
    assert whole.feed(stream) + whole.flush() == frames


@FAST
@given(lines=st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=10))
def test_framer_lf_lines_roundtrip(lines):
    # Lines that cannot look like octet counting come back exactly, in order.
    lines = [b"<13>" + line.replace(b"\x00", b"").rstrip(b"\r") for line in lines]
    framer = SyslogStreamFramer()
    assert framer.feed(b"\n".join(lines) + b"\n") + framer.flush() == lines
