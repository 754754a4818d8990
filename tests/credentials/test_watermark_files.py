"""The watermark reader on files built to hide a mark: damaged packets, fragments, extra streams, huge counts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
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


def laced_webm(target: Path, mebibytes: float) -> Path:
    """A WebM of one VP8 track whose blocks each lace 256 one-byte frames: about a million packets a MiB, none of
    which decodes."""

    def el(ident: int, payload: bytes) -> bytes:  # an EBML element, its size written in 8 bytes
        size = ((1 << 56) | len(payload)).to_bytes(8, "big")
        return ident.to_bytes((ident.bit_length() + 7) // 8, "big") + size + payload

    def uint(ident: int, value: int, width: int) -> bytes:
        return el(ident, value.to_bytes(width, "big"))

    header = el(0x1A45DFA3, el(0x4282, b"webm") + uint(0x4287, 4, 1) + uint(0x4285, 2, 1))
    video = el(0xE0, uint(0xB0, 64, 2) + uint(0xBA, 64, 2))
    tracks = el(0x1654AE6B, el(0xAE, uint(0xD7, 1, 1) + uint(0x83, 1, 1) + el(0x86, b"V_VP8") + video))
    block = el(0xA3, b"\x81\x00\x00\x84\xff" + bytes(256))  # track 1, time 0, keyframe, fixed lacing of 256
    cluster = el(0x1F43B675, uint(0xE7, 0, 1) + block * 1000)
    segment = b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff"  # of unknown size, as a stream writes it
    target.write_bytes(header + segment + tracks + cluster * max(1, round(mebibytes * 2**20 / len(cluster))))
    return target


def test_a_file_of_millions_of_tiny_packets_costs_a_bounded_count_and_memory(tmp_path: Path) -> None:
    """A MiB of one-byte laced packets: its length is counted only up to the cap, and opening and counting it
    takes tens of MiB, not the hundreds that FFmpeg's probe of every packet and a count to the end took."""
    from provenance.credentials.watermark import COUNTED_PACKETS, _count_frames

    laced = laced_webm(tmp_path / "laced.webm", 1.0)
    assert _count_frames(laced) == COUNTED_PACKETS
    measure = (  # the peak resident size of this process alone, in MiB (getrusage's carries the parent's over)
        "import re, sys, av, cv2; from pathlib import Path; from provenance.credentials import watermark; "
        "peak = lambda: int(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1]) // 1024; "
        "before = peak(); watermark._count_frames(Path(sys.argv[1])); print(peak() - before)"
    )
    root = Path(__file__).resolve().parents[2]
    grown = subprocess.run([sys.executable, "-c", measure, str(laced)], cwd=root, capture_output=True, check=True)
    assert int(grown.stdout) < 100, f"counting took {int(grown.stdout)} MiB more"


def test_a_fragmented_mp4_is_read_past_the_frames_its_movie_box_lists(
    tmp_path: Path, signed: Signed, remix: Signed
) -> None:
    """An MP4 written in fragments, a keyframe each, whose movie box holds the first fragment's samples (a live
    video) and whose later fragment holds a taken-down one: its sample tables list only the first, and the
    windows still span both."""
    import av

    from provenance.credentials.watermark import _mp4_layout

    fragmented = tmp_path / "fragmented.mp4"
    with av.open(str(fragmented), "w", format="mp4", options={"movflags": "frag_keyframe"}) as dst:
        out = dst.add_stream("libx264", rate=24)
        assert isinstance(out, av.VideoStream)
        out.width, out.height, out.pix_fmt, out.options = 160, 288, "yuv420p", {"crf": "18", "g": "36"}
        for source in (signed.path, remix.path):
            with av.open(str(source)) as src:
                for frame in list(src.decode(video=0))[:36]:
                    plane = frame.to_ndarray(format="yuv420p")
                    dst.mux(out.encode(av.VideoFrame.from_ndarray(plane, format="yuv420p")))
        dst.mux(out.encode(None))
    with av.open(str(fragmented)) as check:
        assert check.streams.video[0].frames == 36  # what the movie box lists
    assert _mp4_layout(fragmented) == (1, True)
    assert _mp4_layout(signed.path) == (1, False)  # a signed, unfragmented MP4 is taken at its word
    assert decode_watermarks(fragmented) == (payload_for(signed.video_id), payload_for(remix.video_id))


def with_streams(target: Path, sources: list[Path], default: int) -> Path:
    """A file (Matroska or MP4, by its suffix) of one video stream copied from each source, only the one at
    `default` marked default."""
    import av

    inputs = [av.open(str(source)) for source in sources]
    try:
        container = "mp4" if target.suffix == ".mp4" else "matroska"
        with av.open(str(target), "w", format=container) as dst:  # every stream is added before the first packet
            outs = [dst.add_stream_from_template(src.streams.video[0]) for src in inputs]
            for n, out in enumerate(outs):
                out.disposition = av.stream.Disposition.default if n == default else av.stream.Disposition(0)
            for src, out in zip(inputs, outs, strict=True):
                for packet in src.demux(src.streams.video[0]):
                    if packet.dts is not None:
                        packet.stream = out
                        dst.mux(packet)
    finally:
        for src in inputs:
            src.close()
    return target


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_every_video_stream_is_read_so_a_second_one_marked_default_does_not_hide(
    tmp_path: Path, signed: Signed, remix: Signed, suffix: str
) -> None:
    """A live video's stream first and a taken-down one's second, marked default (what players show): both are
    found, the first first. A file of more streams than are read is not verified rather than taken as clean."""
    from provenance.credentials.watermark import MAX_VIDEO_STREAMS

    two = with_streams(tmp_path / f"two{suffix}", [signed.path, remix.path], default=1)
    assert decode_watermarks(two) == (payload_for(signed.video_id), payload_for(remix.video_id))
    many = with_streams(tmp_path / f"many{suffix}", [signed.path] * (MAX_VIDEO_STREAMS + 1), default=0)
    with pytest.raises(WatermarkError, match="too many to verify"):
        decode_watermarks(many)


@pytest.mark.parametrize("handler", [b"meta", b"tmcd"])
def test_an_mp4_track_that_ffmpeg_takes_for_video_whatever_its_handler_says_is_read(
    tmp_path: Path, signed: Signed, remix: Signed, handler: bytes
) -> None:
    """A taken-down video's track whose handler says it is not video: FFmpeg (and a player) takes it for video by
    its sample entry, so it is read too; the box headers alone settle only tracks of video and sound."""
    import av

    from provenance.credentials.watermark import _mp4_layout

    two = bytearray(with_streams(tmp_path / "two.mp4", [signed.path, remix.path], default=1).read_bytes())
    handlers = [at + 12 for at in range(len(two)) if two[at : at + 4] == b"hdlr" and two[at + 12 : at + 16] == b"vide"]
    two[handlers[1] : handlers[1] + 4] = handler
    relabelled = tmp_path / "relabelled.mp4"
    relabelled.write_bytes(bytes(two))
    with av.open(str(relabelled)) as check:
        assert len(check.streams.video) == 2
    assert _mp4_layout(relabelled) is None  # FFmpeg is asked instead
    assert decode_watermarks(relabelled) == (payload_for(signed.video_id), payload_for(remix.video_id))


def second_handler(data: bytes) -> bytes:
    """The second track's `mdia/hdlr` says sound, and its `minf/vmhd` (as long as a `hdlr`) becomes a `hdlr` that
    says video: FFmpeg takes the last handler of a track."""
    import struct

    edited = bytearray(data)
    video = [at for at in range(len(data)) if data[at : at + 4] == b"hdlr" and data[at + 12 : at + 16] == b"vide"]
    handlers = [at - 4 for at in video]
    headers = [at - 4 for at in range(len(data)) if data[at : at + 4] == b"vmhd"]
    edited[handlers[1] + 16 : handlers[1] + 20] = b"soun"
    edited[headers[1] : headers[1] + 20] = struct.pack(">I4sI4s4s", 20, b"hdlr", 0, bytes(4), b"vide")
    return bytes(edited)


def track_outside_the_movie(data: bytes) -> bytes:
    """The second track moved out of `moov` (written last, after the media) to the top level: FFmpeg parses a
    `trak` wherever it sits."""
    import struct

    from tests.credentials.support import top_level_boxes

    start, size, kind = top_level_boxes(data)[-1]
    assert kind == b"moov"
    children = top_level_boxes(data[start + 8 : start + size])
    second = [(at + start + 8, length) for at, length, name in children if name == b"trak"][1]
    track = data[second[0] : second[0] + second[1]]
    body = data[start + 8 : second[0]] + data[second[0] + second[1] : start + size]
    return data[:start] + struct.pack(">I4s", len(body) + 8, b"moov") + body + track


@pytest.mark.parametrize("hide", [second_handler, track_outside_the_movie])
def test_an_mp4_track_hidden_from_a_header_walk_is_read(
    tmp_path: Path, signed: Signed, remix: Signed, hide: Callable[[bytes], bytes]
) -> None:
    import av

    from provenance.credentials.watermark import _mp4_layout

    hidden = tmp_path / "hidden.mp4"
    hidden.write_bytes(hide(with_streams(tmp_path / "two.mp4", [signed.path, remix.path], default=1).read_bytes()))
    with av.open(str(hidden)) as check:
        assert len(check.streams.video) == 2  # what FFmpeg, and a player, find
    assert _mp4_layout(hidden) is None
    assert decode_watermarks(hidden) == (payload_for(signed.video_id), payload_for(remix.video_id))
