"""The watermark reader on files built to hide a mark: damaged packets, fragments, extra streams, huge counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from provenance.credentials.errors import WatermarkError
from provenance.credentials.watermark import decode_watermarks, payload_for
from tests.credentials.conftest import Signed
from tests.credentials.support import splice

UNDECODABLE = b"\x00\x00\x00\x02\x09\xf0"
"""An H.264 access unit of nothing but a delimiter: a packet the decoder refuses."""


def with_bad_packets(source: Path, target: Path, after: int, count: int = 1) -> Path:
    """A stream copy of `source` with `count` undecodable packets after its packet `after` (only those when
    `after` is negative)."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w", format="mp4") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        packets = [p for p in src.demux(src.streams.video[0]) if p.size]
        base = packets[0].time_base
        for packet in packets[: after + 1]:
            packet.stream = out
            dst.mux(packet)
        last = packets[after] if after >= 0 else None
        for extra in range(1, count + 1):
            junk = av.Packet(UNDECODABLE)
            junk.pts = (last.pts if last else 0) + extra
            junk.dts = (last.dts if last else 0) + extra
            junk.time_base, junk.stream = base, out
            dst.mux(junk)
        for packet in packets[after + 1 :] if after >= 0 else ():
            packet.stream = out
            dst.mux(packet)
    return target


@pytest.mark.parametrize(("length", "after"), [("short", 20), ("long", 2)])
def test_a_packet_that_does_not_decode_hides_neither_the_frames_before_it_nor_those_after(
    tmp_path: Path, signed: Signed, remix: Signed, length: str, after: int
) -> None:
    """One undecodable packet in a clip of a live video then a taken-down one is skipped, as a player skips it:
    both videos are still found, in a short clip (read from its start) and in one of over 240 frames (read by
    seeking)."""
    parts = [(signed.path, None), (remix.path, None)]
    if length == "long":
        parts = [(signed.path, 12), (None, 180), (remix.path, None), (remix.path, None)]
    spliced = splice(tmp_path / "spliced.mp4", *parts)
    damaged = with_bad_packets(spliced, tmp_path / "damaged.mp4", after=after)
    assert decode_watermarks(damaged) == (payload_for(signed.video_id), payload_for(remix.video_id))


def test_a_video_none_of_whose_packets_decodes_is_still_reported_as_undecodable(tmp_path: Path, signed: Signed) -> None:
    """Skipping damaged packets does not make a file of nothing else a clean, unmarked video."""
    damaged = with_bad_packets(signed.path, tmp_path / "damaged.mp4", after=-1, count=80)
    with pytest.raises(WatermarkError, match="could not be decoded"):
        decode_watermarks(damaged)
