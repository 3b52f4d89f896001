"""Import of DeepMind gqn-datasets TFRecords without TensorFlow.

The test files are written here in exactly their layout: a hand-encoded ``tf.train.Example``
(features ``frames``: V JPEG strings, ``cameras``: V*5 floats) in TFRecord framing whose CRCs
come from TensorBoard's independent CRC32C. One test also cross-checks the decoder against
protobuf's own encoder.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worldmodel.data.cli import main as data_cli
from worldmodel.data.format import DatasetError, read_manifest, write_manifest
from worldmodel.data.gqn_import import ImportConfig, import_gqn
from worldmodel.data.reader import SceneDataset
from worldmodel.data.tfrecord import crc32c, crc32c_python, iter_records, masked_crc32c, parse_example

try:  # an implementation independent of ours, shipped with tensorboard (a toolkit dependency)
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as oracle_masked_crc
except ImportError:  # pragma: no cover
    oracle_masked_crc = masked_crc32c


# ----------------------------------------------------------------------------- hand encoder


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_example(frames: list[bytes], cameras: np.ndarray) -> bytes:
    """tf.train.Example{features{feature{"frames": bytes_list}, feature{"cameras": float_list (packed)}}}."""
    bytes_list = b"".join(_len_field(1, f) for f in frames)
    float_list = _len_field(1, np.asarray(cameras, "<f4").tobytes())
    entries = [
        _len_field(1, b"frames") + _len_field(2, _len_field(1, bytes_list)),
        _len_field(1, b"cameras") + _len_field(2, _len_field(2, float_list)),
    ]
    features = b"".join(_len_field(1, e) for e in entries)
    return _len_field(1, features)


def frame_record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", oracle_masked_crc(length)) + data + struct.pack("<I", oracle_masked_crc(data))


def jpeg(rng: np.random.Generator, size: int) -> bytes:
    img = (rng.integers(0, 256, (size // 8, size // 8, 3)).repeat(8, 0).repeat(8, 1)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_gqn_files(folder: Path, files: int, records: int, views: int, size: int, seed: int = 0) -> list[tuple]:
    """Write TFRecord files; returns [(file name, record, jpeg list, cameras)] in order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth = []
    for f in range(files):
        name = f"{f + 1:04d}-of-{files:04d}.tfrecord"
        with open(folder / name, "wb") as fh:
            for r in range(records):
                jpegs = [jpeg(rng, size) for _ in range(views)]
                cams = rng.normal(size=views * 5).astype(np.float32)
                fh.write(frame_record(encode_example(jpegs, cams)))
                truth.append((name, r, jpegs, cams))
    return truth


def decoded(jpeg_bytes: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg_bytes)) as img:
        return np.asarray(img.convert("RGB"))


# ----------------------------------------------------------------------------- tests


def test_crc32c_known_values():
    # RFC 3720 (iSCSI) B.4 test vectors and the classic check value
    assert crc32c_python(b"123456789") == 0xE3069283
    assert crc32c_python(bytes(32)) == 0x8A9136AA
    assert crc32c_python(b"\xff" * 32) == 0x62A8AB43
    assert crc32c_python(bytes(range(32))) == 0x46DD794E
    data = bytes(range(256)) * 3
    assert crc32c(data) == crc32c_python(data)
    assert masked_crc32c(data) == oracle_masked_crc(data)


def test_import_round_trip_and_resume(tmp_path):
    views, size = 10, 64
    src = tmp_path / "rooms_ring_camera" / "train"
    truth = write_gqn_files(src, files=2, records=3, views=views, size=size)
    out = tmp_path / "imported"
    s = import_gqn(ImportConfig(str(tmp_path), str(out), "rooms_ring_camera", workers=1, progress=False))
    assert s["complete"] and s["scenes"] == 6 and s["crc32c"] != "not checked"
    ds = SceneDataset(out, verify_checksums=True)
    assert (len(ds), ds.views, ds.size) == (6, views, size)
    assert ds.info["source"] == "gqn:rooms_ring_camera" and ds.info["viewpoint_order"] == "ports"
    for i, (name, r, jpegs, cams) in enumerate(truth):
        item = ds[i]
        assert item["index"] == i
        np.testing.assert_array_equal(item["frames"], np.stack([decoded(j) for j in jpegs]))
        np.testing.assert_array_equal(item["cameras"], cams.reshape(views, 5))  # 5-d raw, unchanged
        assert ds.metadata(i) == {"source": "gqn:rooms_ring_camera", "file": name, "record": r}

    # nothing left to do: a rerun converts no file
    s = import_gqn(ImportConfig(str(tmp_path), str(out), "rooms_ring_camera", workers=1, progress=False))
    assert s["files_imported_now"] == 0
    # resume per input file: forget both files' shards, import again with 2 worker processes
    m = read_manifest(out)
    m["shards"] = []
    write_manifest(out, m)
    with pytest.raises(DatasetError, match="incomplete"):
        SceneDataset(out)
    assert (
        data_cli(["import-gqn", str(tmp_path), str(out), "--dataset", "rooms_ring_camera", "--workers", "2", "--quiet"])
        == 0
    )
    again = SceneDataset(out, verify_checksums=True)
    assert len(again) == 6
    np.testing.assert_array_equal(again[5]["frames"], ds[5]["frames"])
    assert read_manifest(out)["shards"][1]["first_index"] == 3
    # a committed shard deleted later: the resume converts its input file again, identically
    before = read_manifest(out)["shards"]
    (out / "shards" / "shard-000000.frames.npy").unlink()
    s = import_gqn(ImportConfig(str(tmp_path), str(out), "rooms_ring_camera", workers=1, progress=False))
    assert s["files_imported_now"] == 1 and [r["unit"] for r in s["regenerated"]] == [0] and s["complete"]
    assert [sh["files"] for sh in read_manifest(out)["shards"]] == [sh["files"] for sh in before]
    # a different dataset name refuses to resume into the same directory
    with pytest.raises(DatasetError, match="refusing to resume"):
        import_gqn(ImportConfig(str(src), str(out), "jaco", workers=1, progress=False))


def test_import_errors_name_the_file(tmp_path):
    src = tmp_path / "src"
    write_gqn_files(src, files=1, records=2, views=15, size=64)
    path = src / "0001-of-0001.tfrecord"
    with pytest.raises(DatasetError, match=r"0001-of-0001\.tfrecord record 0: expected 10 frames .* got 15"):
        import_gqn(ImportConfig(str(src), str(tmp_path / "a"), "rooms_ring_camera", workers=1, progress=False))
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # inside the last record's camera floats
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"0001-of-0001\.tfrecord: record at byte \d+ failed its CRC32C check"):
        list(iter_records(path))
    assert len(list(iter_records(path, check_crc=False))) == 2
    path.write_bytes(bytes(data[:-7]))
    with pytest.raises(DatasetError, match=r"0001-of-0001\.tfrecord: truncated record"):
        list(iter_records(path, check_crc=False))
    with pytest.raises(FileNotFoundError, match="no \\*.tfrecord files"):
        import_gqn(ImportConfig(str(tmp_path / "a"), str(tmp_path / "b"), "jaco", progress=False))
    with pytest.raises(ValueError, match="valid values: jaco, mazes"):
        import_gqn(ImportConfig(str(src), str(tmp_path / "b"), "rooms", progress=False))


def test_viewpoint_order_option(tmp_path):
    write_gqn_files(tmp_path / "src", files=1, records=1, views=15, size=64)
    assert (
        data_cli(
            [
                "import-gqn",
                str(tmp_path / "src"),
                str(tmp_path / "sm"),
                "--dataset",
                "shepard_metzler_5_parts",
                "--viewpoint-order",
                "deepmind",
                "--no-crc",
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    info = SceneDataset(tmp_path / "sm").info
    assert info["viewpoint_order"] == "deepmind" and info["views"] == 15
    assert json.loads((tmp_path / "sm" / "manifest.json").read_text())["crc32c"] == "not checked"


def test_decoder_agrees_with_protobuf_and_tensorboard_writer(tmp_path):
    """Independent encoders (protobuf's serializer, TensorBoard's RecordWriter) -> our reader."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from tensorboard.summary.writer.record_writer import RecordWriter

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="wm_test_example.proto", package="wmtest", syntax="proto3")

    def message(name, fields, nested=(), oneof=None):
        m = fdp.message_type.add(name=name)
        if oneof:
            m.oneof_decl.add(name=oneof)
        for num, fname, ftype, label, tname in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = tname
            if oneof:
                f.oneof_index = 0
        return m

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BytesList", [(1, "value", F.TYPE_BYTES, rep, None)])
    message("FloatList", [(1, "value", F.TYPE_FLOAT, rep, None)])
    message("Int64List", [(1, "value", F.TYPE_INT64, rep, None)])
    message(
        "Feature",
        [
            (1, "bytes_list", F.TYPE_MESSAGE, opt, ".wmtest.BytesList"),
            (2, "float_list", F.TYPE_MESSAGE, opt, ".wmtest.FloatList"),
            (3, "int64_list", F.TYPE_MESSAGE, opt, ".wmtest.Int64List"),
        ],
        oneof="kind",
    )
    feats = message("Features", [(1, "feature", F.TYPE_MESSAGE, rep, ".wmtest.Features.FeatureEntry")])
    entry = feats.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=opt, type_name=".wmtest.Feature")
    message("Example", [(1, "features", F.TYPE_MESSAGE, opt, ".wmtest.Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    Example = message_factory.GetMessageClass(pool.FindMessageTypeByName("wmtest.Example"))

    rng = np.random.default_rng(1)
    examples = []
    path = tmp_path / "x.tfrecord"
    writer = RecordWriter(open(path, "wb"))
    for _ in range(3):
        jpegs = [jpeg(rng, 64) for _ in range(11)]
        cams = rng.normal(size=55).astype(np.float32)
        ex = Example()
        ex.features.feature["frames"].bytes_list.value.extend(jpegs)
        ex.features.feature["cameras"].float_list.value.extend(cams.tolist())
        ex.features.feature["step"].int64_list.value.extend([5, -3, 2**40])
        writer.write(ex.SerializeToString())
        examples.append((jpegs, cams))
    writer.close()
    records = list(iter_records(path))
    assert len(records) == 3
    for data, (jpegs, cams) in zip(records, examples):
        parsed = parse_example(data)
        assert parsed["frames"] == jpegs
        np.testing.assert_array_equal(parsed["cameras"], cams)
        assert parsed["step"].tolist() == [5, -3, 2**40]
    ds_out = tmp_path / "jaco"
    import_gqn(ImportConfig(str(path), str(ds_out), "jaco", workers=1, progress=False))
    ds = SceneDataset(ds_out)
    np.testing.assert_array_equal(ds[2]["cameras"], examples[2][1].reshape(11, 5))
