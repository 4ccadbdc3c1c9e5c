"""Live input (issue 32): DV's AEDAT 4 network stream read over real sockets, named pipes and
standard input; `spikmamba replay` serving recordings as that stream; broken streams refused
with the byte offset, never a hang; dv-processing (iniVation's own library) reading our stream
and we reading its, when it is installed."""
import math
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from spikmamba.errors import MissingDependency
from spikmamba.events import EVENT_DTYPE, make_events
from spikmamba.events.io import EventFormatError, read_events, stream_events, write_events
from spikmamba.events.io.aedat4_wire import decode_events, encode_events, encode_header, parse_header
from spikmamba.events.replay import ReplayServer

#: one packet as dv-processing 2.0.4's NetworkWriter sent it (five events: t = 1.7e15 + 10 i,
#: x = i, y = 2 i, on for even i), captured from a socket
DV_PACKET = bytes.fromhex(
    "00000000700000006c00000010000000455654530000060008000400060000000400000005000000"
    "00401e18240a060000000000010000000a401e18240a0600010002000000000014401e18240a0600"
    "02000400010000001e401e18240a0600030006000000000028401e18240a06000400080001000000"
)


def _events(n=20_000, span=400_000, sensor=(128, 96), seed=0):
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, span, n)), rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n),
                       rng.integers(0, 2, n))


@pytest.fixture
def recording(tmp_path):
    ev = _events()
    write_events(tmp_path / "rec.npz", ev, sensor_size=(128, 96))
    return tmp_path / "rec.npz", ev


def test_our_packet_is_byte_for_byte_dvs_and_decodes_back():
    assert len(DV_PACKET) == 8 + 112
    ev = decode_events("dv", DV_PACKET[8:], 8)
    want = make_events([1_700_000_000_000_000 + 10 * i for i in range(5)], list(range(5)), [2 * i for i in range(5)],
                       [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(ev, want)
    assert encode_events(want) == DV_PACKET
    header = encode_header(346, 260, source="a <camera> & co")
    assert parse_header("ours", header[4:], 4) == (0, (346, 260), {0})


def test_a_replayed_recording_arrives_whole_and_in_order_over_tcp(recording):
    path, ev = recording
    with ReplayServer(path, speed=math.inf) as server:
        stream = stream_events(server.address, timeout=5)
        assert stream.sensor_size == (128, 96) and stream.format == "aedat4-live"
        chunks = list(stream)
    np.testing.assert_array_equal(np.concatenate(chunks), ev)
    assert stream.packets == len(chunks) > 100 and stream.last_arrival is not None  # 2 ms packets of 0.4 s


def test_replay_keeps_real_time_and_loops_with_rising_timestamps(recording):
    path, ev = recording
    with ReplayServer(path, speed=2.0, loop=True) as server:
        stream = stream_events(server.address, timeout=5)
        started, got = time.monotonic(), []
        for chunk in stream:
            got.append(chunk)
            if sum(len(c) for c in got) >= 2 * len(ev) + 10:
                break
        elapsed = time.monotonic() - started
        stream.close()
    t = np.concatenate(got)["t"]
    assert np.all(np.diff(t) >= 0)  # the second pass continues upward
    assert elapsed >= 0.9 * (t[-1] - t[0]) / 1e6 / 2  # paced at 2x the recording's own clock


def test_replay_packets_are_two_ms_of_the_wall_clock_at_any_speed(recording):
    """As a camera commits packets at an interval: replayed 8x faster, each packet holds 16 ms of
    the 0.4 s recording (25 packets), not 2 ms (200), and nothing is lost or reordered."""
    path, ev = recording
    with ReplayServer(path, speed=8.0) as server:
        stream = stream_events(server.address, timeout=5)
        chunks = list(stream)
    np.testing.assert_array_equal(np.concatenate(chunks), ev)
    span = int(ev["t"][-1] - ev["t"][0])
    assert stream.packets == len(chunks) == span // 16_000 + 1
    assert all(int(c["t"][-1] - c["t"][0]) < 16_000 for c in chunks)


def test_replay_starts_its_clock_with_the_first_packet_not_before_reading_the_file(recording, monkeypatch):
    """A file slow to open (a large compressed npz is read whole first) must not make the first
    packets late, sent in one burst: the pace holds from the first packet on."""
    from spikmamba.events import replay

    path, ev = recording
    real = replay.packets

    def slow_to_open(*args):
        time.sleep(0.3)
        yield from real(*args)

    monkeypatch.setattr(replay, "packets", slow_to_open)
    with ReplayServer(path, speed=1.0) as server:
        stream = stream_events(server.address, timeout=5)
        arrivals = [stream.last_arrival for _ in stream]
    span = (int(ev["t"][-1]) - int(ev["t"][0])) / 1e6
    assert arrivals[-1] - arrivals[0] >= 0.9 * span  # the whole 0.4 s, not 0.1 s after a 0.3 s burst


def test_an_aedat4_file_of_our_framing_is_read_by_the_aedat_decoder(tmp_path):
    pytest.importorskip("aedat", reason="the aedat package is not installed (pip install aedat)")
    ev = _events(3000)
    body = encode_header(128, 96)
    body += b"".join(encode_events(ev[i:i + 500]) for i in range(0, len(ev), 500))
    (tmp_path / "ours.aedat4").write_bytes(b"#!AER-DAT4.0\r\n" + body)
    rec = read_events(tmp_path / "ours.aedat4")  # the Rust decoder of iniVation's format, not ours
    np.testing.assert_array_equal(rec.events, ev)
    assert rec.sensor_size == (128, 96)


def _serve_bytes(payload: bytes, then_wait: float = 0.0):
    """A one-shot TCP server sending ``payload`` and then holding the connection ``then_wait`` s."""
    srv = socket.create_server(("127.0.0.1", 0))

    def run():
        conn, _ = srv.accept()
        with conn:
            conn.sendall(payload)
            time.sleep(then_wait)
        srv.close()

    threading.Thread(target=run, daemon=True).start()
    return f"tcp://127.0.0.1:{srv.getsockname()[1]}"


def _read_all(address, timeout=0.5):
    return list(stream_events(address, timeout=timeout))


def test_broken_streams_are_refused_naming_the_byte_and_never_hang():
    header = encode_header(64, 64)
    packet = encode_events(_events(10, sensor=(64, 64)))
    started = time.monotonic()
    with pytest.raises(EventFormatError, match=r"at byte 0: the stream stalled while sending the header size: "
                                               r"nothing came in 0.5 s"):
        _read_all(_serve_bytes(b"", then_wait=2))
    with pytest.raises(EventFormatError, match="header size 2147483647 is not in"):
        _read_all(_serve_bytes(struct.pack("<i", 2**31 - 1)))
    with pytest.raises(EventFormatError, match="lacks the IOHE tag"):
        _read_all(_serve_bytes(struct.pack("<i", 64) + b"\0" * 64))
    with pytest.raises(EventFormatError, match=f"at byte {len(header)}: a packet of 1000000000 bytes"):
        _read_all(_serve_bytes(header + struct.pack("<ii", 0, 10**9)))
    with pytest.raises(EventFormatError, match=f"at byte {len(header) + 8}: the stream ended inside a "
                                               f"{len(packet) - 8}-byte packet \\(20 of"):
        _read_all(_serve_bytes(header + packet[:28]))
    with pytest.raises(EventFormatError, match="stalled while sending a .*-byte packet: 20 of"):
        _read_all(_serve_bytes(header + packet[:28], then_wait=2))
    bad = bytearray(packet)
    bad[8 + 4 + 24:8 + 4 + 28] = struct.pack("<I", 10**6)  # the vector claims a million events
    with pytest.raises(EventFormatError, match="claims 1,000,000 events"):
        _read_all(_serve_bytes(header + bytes(bad)))
    assert time.monotonic() - started < 10
    events = _read_all(_serve_bytes(header + packet))  # the same bytes whole: read, then a clean end
    assert sum(len(c) for c in events) == 10


@pytest.mark.parametrize("kind, code, package", [("lz4", 1, "lz4"), ("zstd", 3, "zstandard")])
def test_a_compressed_stream_is_decoded_or_names_the_package(kind, code, package):
    header = bytearray(encode_header(64, 64))
    header[4 + 28:4 + 32] = struct.pack("<i", code)  # the IOHeader's compression field
    ev = _events(500, sensor=(64, 64))
    plain = encode_events(ev)
    try:
        __import__(package)
    except ImportError:
        with pytest.raises(MissingDependency, match=f"pip install {package}"):
            _read_all(_serve_bytes(bytes(header) + plain))
        return
    if kind == "lz4":
        import lz4.frame

        body = lz4.frame.compress(plain[8:])
    else:
        import zstandard

        body = zstandard.ZstdCompressor().compress(plain[8:])
    packet = struct.pack("<ii", 0, len(body)) + body
    np.testing.assert_array_equal(np.concatenate(_read_all(_serve_bytes(bytes(header) + packet))), ev)
    with pytest.raises(EventFormatError, match=f"at byte {len(header) + 8}: a {kind} packet does not decompress"):
        _read_all(_serve_bytes(bytes(header) + plain))  # the header says compressed; the body is not


def test_a_named_pipe_and_standard_input_carry_the_same_stream(tmp_path):
    ev = _events(2000, sensor=(64, 64))
    payload = encode_header(64, 64) + b"".join(encode_events(ev[i:i + 300]) for i in range(0, len(ev), 300))
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(payload), daemon=True)
    writer.start()
    np.testing.assert_array_equal(np.concatenate(list(stream_events(fifo))), ev)
    code = ("import sys, numpy as np; from spikmamba.events.io import stream_events; "
            "print(sum(len(c) for c in stream_events('-')))")
    run = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, timeout=60)
    assert run.returncode == 0 and run.stdout.decode().strip() == "2000", run.stderr.decode()[-2000:]


def _free_port() -> int:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def _replay_process(path, port, *extra):
    """`spikmamba replay` in its own process (dv-processing's reader holds the GIL while it waits)."""
    proc = subprocess.Popen([sys.executable, "-m", "spikmamba", "replay", str(path), "--serve",
                             f"tcp://127.0.0.1:{port}", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()
    assert line.startswith("serving "), line + proc.stderr.read()
    return proc


_DV_WRITER = """
import sys, time, numpy as np, dv_processing as dv
ev = np.load(sys.argv[1])
stream = dv.io.Stream.EventStream(0, "events", "test", (128, 96))
stream.setCompression(getattr(dv.CompressionType, sys.argv[3]))
writer = dv.io.NetworkWriter("127.0.0.1", int(sys.argv[2]), stream)
print("listening", flush=True)
deadline = time.time() + 20
while writer.getClientCount() == 0 and time.time() < deadline:
    time.sleep(0.01)
store = dv.EventStore()
for t, x, y, p in zip(ev["t"].tolist(), ev["x"].tolist(), ev["y"].tolist(), ev["p"].tolist()):
    store.push_back(t, x, y, bool(p))
writer.writeEvents(store)
time.sleep(2)
"""


@pytest.mark.slow  # three subprocesses
def test_dv_processing_reads_our_stream_and_we_read_its(tmp_path):
    dv = pytest.importorskip("dv_processing", reason="dv-processing is not installed (pip install dv-processing)")
    ev = _events(4000, span=200_000)
    write_events(tmp_path / "r.npz", ev, sensor_size=(128, 96))
    # ours -> theirs: their NetworkReader on `spikmamba replay` (looping: a connection that stays live)
    port = _free_port()
    server = _replay_process(tmp_path / "r.npz", port, "--loop")
    try:
        reader = dv.io.NetworkReader("127.0.0.1", port)
        assert reader.isEventStreamAvailable() and tuple(reader.getEventResolution()) == (128, 96)
        got, deadline = [], time.monotonic() + 20
        while sum(len(b) for b in got) < 200 and time.monotonic() < deadline:
            batch = reader.getNextEventBatch()
            if batch is None:
                time.sleep(0.005)
            else:
                got.append(batch.numpy())
    finally:
        server.terminate()
        server.wait(timeout=10)
    theirs = np.concatenate(got)
    k = len(theirs)
    assert k >= 200
    np.testing.assert_array_equal(theirs["timestamp"], ev["t"][:k])
    np.testing.assert_array_equal(theirs["x"], ev["x"][:k])
    np.testing.assert_array_equal(theirs["y"], ev["y"][:k])
    np.testing.assert_array_equal(theirs["polarity"].astype(int), ev["p"][:k])
    # theirs -> ours: our reader on their NetworkWriter, in its own process, plain and compressed
    np.save(tmp_path / "ev.npy", ev[:300])
    for compression in ("NONE", "LZ4", "ZSTD"):
        _read_from_dv_writer(tmp_path / "ev.npy", compression, ev[:300])


def _read_from_dv_writer(events_file, compression, want):
    port = _free_port()
    writer = subprocess.Popen([sys.executable, "-c", _DV_WRITER, str(events_file), str(port), compression],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "listening", writer.stderr.read()
        ours = stream_events(f"tcp://127.0.0.1:{port}", timeout=10)
        assert ours.sensor_size == (128, 96)
        received = []
        for chunk in ours:
            received.append(chunk)
            if sum(len(c) for c in received) >= 300:
                break
        ours.close()
    finally:
        writer.kill()
        writer.wait(timeout=10)
    np.testing.assert_array_equal(np.concatenate(received), want, err_msg=compression)


@pytest.fixture
def gesture_stream(tmp_path):
    """Two seconds of simulated actions (SynthActions clips one after another) on the 32x32 sensor
    the shipped synth model was trained on."""
    from spikmamba.data import SynthActions

    ds = SynthActions(split="test", num_samples=4, sensor_size=(32, 32), seed=0)
    parts, offset = [], 0
    for i in range(4):
        ev = ds.events(i).copy()
        ev["t"] = ev["t"] - ev["t"][0] + offset
        offset = int(ev["t"][-1]) + 1000
        parts.append(ev)
    write_events(tmp_path / "actions.npz", np.concatenate(parts), sensor_size=(32, 32))
    return tmp_path / "actions.npz"


@pytest.mark.slow  # a model on a 1 s stream, then offline
def test_live_prediction_labels_each_window_as_it_closes_with_its_latency(gesture_stream, tmp_path):
    from spikmamba.engine.live import predict_live
    from spikmamba.engine.predict import load_predictor

    predictor = load_predictor(model="spikmamba_tiny_sps.synth")
    seen = []
    with ReplayServer(gesture_stream, speed=4.0) as server:
        r = predict_live(predictor, server.address, window_ms=500, stride_ms=250, echo=seen.append,
                         max_lag_ms=10_000)
    rows = r.timeline.rows
    assert seen == rows and len(rows) >= 6 and r.ended == "the stream ended" and r.dropped == 0
    assert all(row["label"] in predictor.classes for row in rows if row["events"])
    assert all(row["latency_ms"] >= 0 for row in rows)
    s = r.summary()
    assert 0 < s["latency_p50_ms"] <= s["latency_p95_ms"] <= s["latency_p99_ms"]
    # the rate is over the stream, from the first event's arrival, not over connecting and warming up
    assert 0 < s["streaming_s"] < s["processing_s"] and s["events_per_s_sustained"] == s["events"] / s["streaming_s"]
    assert s["events"] == len(read_events(gesture_stream).events) and r.packets > 10
    # the live windows are the file's windows: the same labels as `predict --window` on the file
    from spikmamba.engine.timeline import predict_timeline

    offline = predict_timeline(predictor, gesture_stream, 500, 250, topk=3)
    assert [row["label"] for row in rows] == [row["label"] for row in offline.rows]


@pytest.mark.slow  # a model on a 1 s stream
def test_a_model_slower_than_the_stream_drops_windows_and_counts_them(gesture_stream):
    from spikmamba.engine.live import DROPPED, predict_live
    from spikmamba.engine.predict import load_predictor

    predictor = load_predictor(model="spikmamba_tiny_sps.synth")
    slow_forward = predictor.forward

    def slow(x):
        time.sleep(0.2)  # a window every 62.5 ms of wall time at 4x: this model cannot keep up
        return slow_forward(x)

    predictor.forward = slow
    with ReplayServer(gesture_stream, speed=4.0) as server:
        r = predict_live(predictor, server.address, window_ms=500, stride_ms=250, max_lag_ms=100)
    labels = [row["label"] for row in r.timeline.rows]
    assert r.dropped == labels.count(DROPPED) > 0 and labels.count(DROPPED) < len(labels)
    assert r.summary()["dropped_windows"] == r.dropped


@pytest.mark.slow  # a model on a stream
def test_predict_live_on_the_command_line_prints_windows_and_writes_the_timeline(gesture_stream, tmp_path, capsys):
    from spikmamba.cli import main

    with ReplayServer(gesture_stream, speed=8.0) as server:
        rc = main(["predict", "--model", "spikmamba_tiny_sps.synth", "--live", server.address, "--window", "500",
                   "--stride", "250", "--max-windows", "4", "--timeline", str(tmp_path / "tl")])
    out = capsys.readouterr().out
    assert rc == 0 and out.count(" ms\n") == 4 and "latency p50/p95/p99" in out and "stopped after 4 windows" in out
    import json

    doc = json.loads((tmp_path / "tl.json").read_text())
    assert len(doc["windows"]) == 4 and doc["latency_p99_ms"] is not None and doc["dropped_windows"] == 0
    assert main(["predict", "--model", "spikmamba_tiny_sps.synth", "--live", server.address, "x.npz"]) == 2
    assert main(["predict", "--model", "spikmamba_tiny_sps.synth", "--live", "tcp://127.0.0.1:1"]) == 2
    assert "cannot connect to tcp://127.0.0.1:1" in capsys.readouterr().err


@pytest.mark.slow  # a model on three short connections
def test_reconnect_waits_for_the_server_and_reconnects_when_the_stream_ends(gesture_stream):
    from spikmamba.engine.live import predict_live
    from spikmamba.engine.predict import load_predictor

    predictor = load_predictor(model="spikmamba_tiny_sps.synth")
    one_pass = len(predict_timeline_rows(predictor, gesture_stream))
    port = _free_port()
    servers, notes = [], []

    def note(text):  # the first failed connection brings the server up: nobody listened at first
        notes.append(text)
        if not servers:
            servers.append(ReplayServer(gesture_stream, port=port, speed=8.0).start())

    try:
        r = predict_live(predictor, f"tcp://127.0.0.1:{port}", window_ms=500, stride_ms=250, reconnect=True,
                         max_windows=one_pass + 2, note=note, timeout=2, max_lag_ms=10_000)
    finally:
        for server in servers:
            server.close()
    assert len(r.timeline.rows) == one_pass + 2 and r.ended == f"stopped after {one_pass + 2} windows"
    assert r.reconnects >= 2  # nobody listening at first, then the end of the first pass
    assert any("cannot connect" in n for n in notes) and any(n.startswith("the stream ended") for n in notes)
    assert r.summary()["reconnects"] == r.reconnects


def predict_timeline_rows(predictor, path):
    from spikmamba.engine.timeline import predict_timeline

    return predict_timeline(predictor, path, 500, 250).rows


class _Camera:
    """A live stream stand-in: a chunk every 10 ms, each stamped on arrival, as open_live stamps them."""

    def __init__(self, chunks=40, fail_at=None):
        self.path, self.format, self.sensor_size = "camera", "aedat4-live", (8, 8)
        self.last_arrival, self.packets, self.skipped, self.closed = None, 0, 0, False
        self.chunks, self.fail_at = chunks, fail_at

    def __iter__(self):
        for k in range(self.chunks):
            time.sleep(0.01)
            if k == self.fail_at:
                raise EventFormatError("camera", 1234, "a packet of -1 bytes")
            self.last_arrival, self.packets = time.monotonic(), self.packets + 1
            yield np.zeros(5, dtype=EVENT_DTYPE)

    def close(self):
        self.closed = True


def test_read_ahead_stamps_packets_when_they_arrive_not_when_a_busy_consumer_takes_them():
    from spikmamba.events.io.live import ReadAhead

    stream = ReadAhead(_Camera())
    arrivals = []
    for i, _ in enumerate(stream):
        arrivals.append(stream.last_arrival)
        if i == 0:
            assert not stream.arrived(1) and not stream.ended  # time 1 has not come (all events are at 0)
            time.sleep(0.3)  # classifying a window: 30 packets arrive meanwhile
            assert stream.arrived(0)
    assert len(arrivals) == 40 and stream.packets == 40 and stream.stalls == 0
    assert stream.ended and stream.arrived(10**15)  # ended: nothing more to wait for
    gaps = np.diff(arrivals[1:])  # read in the consumer's thread they would all be stamped after the 0.3 s
    assert arrivals[1] - arrivals[0] < 0.1 and np.median(gaps) > 0.005, (arrivals[1] - arrivals[0], gaps)
    stream.close()
    assert stream.stream.closed
    # bounded: a consumer that does not read makes the reader wait, and it is counted
    held = ReadAhead(_Camera(), max_events=10)
    time.sleep(0.2)
    assert held.waiting == 10 and held.stalls == 1
    assert sum(len(c) for c in held) == 200  # nothing lost
    # the stream's error reaches the consumer, naming the byte as before
    with pytest.raises(EventFormatError, match="1234"):
        list(ReadAhead(_Camera(fail_at=3)))


@pytest.mark.slow  # a model on a 2 s stream, then offline
def test_windows_already_closed_share_one_forward_pass_and_keep_their_labels(gesture_stream):
    from spikmamba.engine.live import predict_live
    from spikmamba.engine.predict import load_predictor
    from spikmamba.engine.timeline import predict_timeline

    predictor = load_predictor(model="spikmamba_tiny_sps.synth")
    real, sizes = predictor.forward, []

    def busy(x):
        sizes.append(len(x))
        time.sleep(0.05)  # slower than the stream: closed windows pile up behind each pass
        return real(x)

    predictor.forward = busy
    with ReplayServer(gesture_stream, speed=8.0) as server:
        r = predict_live(predictor, server.address, window_ms=500, stride_ms=100, max_lag_ms=10_000)
    predictor.forward = real
    sizes = sizes[1:]  # the first is the warm-up before the stream opens
    assert r.dropped == 0 and max(sizes) > 1 and sum(sizes) == sum(1 for row in r.timeline.rows if row["events"])
    # the windows that only the stream's end closes (no event at or after their end) are all known
    # at once when it ends: one pass, not one after another, each waiting for those before it
    last_t = int(read_events(gesture_stream).events["t"].max())
    assert sizes[-1] >= sum(1 for row in r.timeline.rows if row["end_us"] > last_t) > 1
    # and they are marked, their latency reported apart from that of the windows an event closed
    by_end = [row["end_us"] > last_t for row in r.timeline.rows]
    assert [row.get("closed_by") == "end of stream" for row in r.timeline.rows] == by_end
    s = r.summary()
    assert s["end_windows"] == sum(by_end) == len(r.end_latencies_ms)
    assert len(r.latencies_ms) == len(by_end) - sum(by_end)
    assert s["end_latency_max_ms"] == max(row["latency_ms"] for row, end in zip(r.timeline.rows, by_end) if end)
    offline = predict_timeline(predictor, gesture_stream, 500, 100, topk=3)
    assert [row["label"] for row in r.timeline.rows] == [row["label"] for row in offline.rows]
    live_top = [[t["probability"] for t in row["top"]] for row in r.timeline.rows]
    offline_top = [[t["probability"] for t in row["top"]] for row in offline.rows]
    assert np.allclose(live_top, offline_top, atol=1e-5)
