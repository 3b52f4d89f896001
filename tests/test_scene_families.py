"""GQN scene families "rooms" and "shepard-metzler": real MuJoCo renders, determinism, geometry."""

from __future__ import annotations

import dataclasses
import gc
import json

import numpy as np
import pytest

import envs  # noqa: F401  (sets MUJOCO_GL)
from envs.camera import CameraPose, pose_matrix, wrap_angle
from envs.rendering import OffscreenRenderer
from envs.scenes import SOURCE_DEFAULTS, generate_scene, rooms, scene_rng
from envs.scenes import shepard_metzler as sm
from envs.scenes.canvas import MAX_CANVASES, close_canvases, open_canvas_count
from envs.scenes.mjcf import SHAPE_SPECS, SHAPES, yaw_quaternion


def _project(viewpoint: np.ndarray, point: np.ndarray, fovy_deg: float, size: int) -> tuple[float, float, float]:
    """(row, col, depth) of a world point in the image of a camera (OpenGL convention, square image)."""
    t = pose_matrix(np.asarray(viewpoint, dtype=np.float64))
    p = t[:3, :3].T @ (np.asarray(point, dtype=np.float64) - t[:3, 3])
    depth = -p[2]
    f = 1.0 / np.tan(np.deg2rad(fovy_deg) / 2.0)
    x, y = f * p[0] / depth, f * p[1] / depth
    return (1.0 - y) / 2.0 * size, (x + 1.0) / 2.0 * size, depth


def _same(a, b) -> bool:
    return (
        a.frames.tobytes() == b.frames.tobytes()
        and a.cameras.tobytes() == b.cameras.tobytes()
        and json.dumps(a.metadata, sort_keys=True) == json.dumps(b.metadata, sort_keys=True)
        and a.extras.keys() == b.extras.keys()
        and all(a.extras[k].tobytes() == b.extras[k].tobytes() for k in a.extras)
    )


@pytest.mark.parametrize("source", ["rooms", "shepard-metzler"])
def test_record_shapes_dtypes_and_json_metadata(source):
    rec = generate_scene(source, seed=1, index=0, views=4, size=24)
    assert rec.frames.shape == (4, 24, 24, 3) and rec.frames.dtype == np.uint8
    assert rec.cameras.shape == (4, 5) and rec.cameras.dtype == np.float32
    meta = json.loads(json.dumps(rec.metadata))
    assert meta["source"] == source and meta["seed"] == 1 and meta["index"] == 0
    for f in rec.frames:  # not blank: several distinct colours in every view
        assert f.std() > 5.0 and len(np.unique(f.reshape(-1, 3), axis=0)) > 4
    # Defaults follow GQN (10 views for rooms, 15 for Shepard-Metzler, 64 px).
    default = rooms.generate(1, 0) if source == "rooms" else sm.generate(1, 0)
    assert (default.frames.shape[0], default.frames.shape[1]) == SOURCE_DEFAULTS[source]


@pytest.mark.parametrize(
    "source,options,fuller",
    [
        ("rooms", {"camera": "ring", "n_objects": 1}, {"n_objects": 5}),
        ("rooms", {"camera": "free", "trajectory": True}, {"n_objects": 5, "object_rotations": False}),
        ("shepard-metzler", {"parts": 5}, {"parts": 7}),
    ],
)
def test_deterministic_from_seed_and_index_only(source, options, fuller):
    a = generate_scene(source, 7, 3, views=3, size=24, **options)
    generate_scene(source, 7, 4, views=3, size=24, **fuller)  # a fuller scene in between leaves no trace
    b = generate_scene(source, 7, 3, views=3, size=24, **options)
    close_canvases()  # and a freshly compiled template
    c = generate_scene(source, 7, 3, views=3, size=24, **options)
    assert _same(a, b) and _same(a, c)
    other_index = generate_scene(source, 7, 5, views=3, size=24, **options)
    other_seed = generate_scene(source, 8, 3, views=3, size=24, **options)
    for other in (other_index, other_seed):
        assert not np.array_equal(a.frames, other.frames)
        assert not np.array_equal(a.cameras, other.cameras)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_room_shape_renders_where_the_camera_says(shape):
    """The object changes the pixels around its projected centre, in its own colour."""
    size = 48
    rec = rooms.generate(3, SHAPES.index(shape), views=6, size=size, shapes=(shape,), n_objects=1, trajectory=True)
    (obj,) = rec.metadata["objects"]
    assert obj["shape"] == shape
    layout = rooms.sample_layout(scene_rng(3, SHAPES.index(shape)), 1, (shape,))
    assert layout.objects[0].rgb == tuple(obj["colour"])
    poses = [CameraPose.from_viewpoint(v) for v in rec.cameras]
    without = rooms.render_layout(dataclasses.replace(layout, objects=()), poses, size)
    centre = np.array([*obj["position"][:2], SHAPE_SPECS[shape].height / 2.0])
    rgb = np.array(obj["colour"])
    checked = 0
    for v in range(len(poses)):
        row, col, depth = _project(rec.cameras[v], centre, rec.metadata["fovy_deg"], size)
        if depth <= 0 or not (0.15 * size < row < 0.85 * size and 0.15 * size < col < 0.85 * size):
            continue
        changed = np.any(rec.frames[v] != without[v], axis=-1)
        r, c = int(row), int(col)
        assert changed[r - 1 : r + 2, c - 1 : c + 2].any(), f"view {v}: object not drawn at its projection"
        # Under white lights the object's pixels keep the chromaticity of its colour.
        pix = rec.frames[v][changed].astype(np.float64) + 1.0
        chroma = np.median(pix / pix.sum(-1, keepdims=True), axis=0)
        np.testing.assert_allclose(chroma, rgb / rgb.sum(), atol=0.05)
        checked += 1
    assert checked >= 1


def _standalone_silhouette(obj, pose, size: int) -> np.ndarray:
    """Mask of one shape rendered alone (black background) in its own minimal model."""
    import mujoco

    spec = SHAPE_SPECS[obj.shape]
    q = yaw_quaternion(obj.yaw)
    xml = (
        f"<mujoco><asset>{spec.mesh_xml()}</asset><worldbody>"
        f'<body pos="{obj.position[0]} {obj.position[1]} 0" quat="{q[0]} {q[1]} {q[2]} {q[3]}">'
        f"{spec.geom_xml('g')}</body></worldbody></mujoco>"
    )
    model = mujoco.MjModel.from_xml_string(xml)
    model.vis.global_.fovy = rooms.FOVY_DEG
    model.stat.extent = rooms.ROOM_HALF_SIZE
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer = OffscreenRenderer(model, size, size)
    try:
        return renderer.render(data, pose).max(axis=-1) > 0
    finally:
        renderer.close()


def test_each_slot_shows_only_its_own_shape():
    """The template's object matches the same shape rendered alone (no other shape shows through)."""
    size = 48
    pose = CameraPose.look_at(np.array([1.7, 0.3, 0.9]), np.array([0.0, 0.0, 0.35]))
    base = rooms.RoomLayout(wall_rgb=(0.5, 0.5, 0.6), floor_rgb=(0.6, 0.6, 0.5))
    empty = rooms.render_layout(base, [pose], size)[0]
    for shape in SHAPES:
        obj = rooms.RoomObject(shape, (0.9, 0.2, 0.2), (0.2, -0.1), 0.4)
        frame = rooms.render_layout(dataclasses.replace(base, objects=(obj,)), [pose], size)[0]
        mask = np.any(frame != empty, axis=-1)
        alone = _standalone_silhouette(obj, pose, size)
        iou = (mask & alone).sum() / (mask | alone).sum()
        assert mask.mean() > 0.02 and iou > 0.95, (shape, iou)


def test_ring_cameras_share_height_radius_and_target():
    rec = rooms.generate(0, 1, views=8, size=16, camera="ring")
    pos = rec.cameras[:, :3].astype(np.float64)
    np.testing.assert_allclose(pos[:, 2], rooms.RING_HEIGHT, atol=1e-5)
    np.testing.assert_allclose(np.hypot(pos[:, 0], pos[:, 1]), rooms.RING_RADIUS, atol=1e-5)
    target = np.asarray(rooms.RING_TARGET)
    fwd = pose_matrix(rec.cameras)[:, :3, 2] * -1.0
    to_target = (target - pos) / np.linalg.norm(target - pos, axis=-1, keepdims=True)
    np.testing.assert_allclose(fwd, to_target, atol=1e-5)
    assert rec.metadata["camera"] == "ring"
    # Default: independent random angles (not evenly spaced).
    steps = wrap_angle(np.diff(rec.cameras[:, 3].astype(np.float64)))
    assert np.ptp(np.abs(steps)) > 0.1


def test_ring_trajectory_steps_evenly_so_relative_poses_repeat():
    views = 6
    rec = rooms.generate(0, 2, views=views, size=16, camera="ring", trajectory=True)
    steps = wrap_angle(np.diff(rec.cameras[:, 3].astype(np.float64)))
    np.testing.assert_allclose(np.abs(steps), 2 * np.pi / views, atol=1e-5)
    assert np.all(np.sign(steps) == np.sign(steps[0]))
    t = pose_matrix(rec.cameras.astype(np.float64))
    rel = [np.linalg.inv(t[i]) @ t[i + 1] for i in range(views - 1)]
    for r in rel[1:]:
        np.testing.assert_allclose(r, rel[0], atol=1e-4)
    small = rooms.generate(0, 2, views=4, size=16, camera="ring", trajectory=True, angle_step=0.1)
    np.testing.assert_allclose(np.abs(wrap_angle(np.diff(small.cameras[:, 3].astype(np.float64)))), 0.1, atol=1e-5)


@pytest.mark.parametrize("trajectory", [False, True])
def test_free_cameras_stay_inside_the_room_clear_of_objects(trajectory):
    for index in range(4):
        rec = rooms.generate(5, index, views=10, size=16, camera="free", trajectory=trajectory, n_objects=3)
        pos = rec.cameras[:, :3].astype(np.float64)
        assert np.all(np.abs(pos[:, :2]) <= rooms.ROOM_HALF_SIZE - rooms.FREE_WALL_MARGIN + 1e-5)
        assert np.all((pos[:, 2] >= rooms.FREE_HEIGHT[0] - 1e-5) & (pos[:, 2] <= rooms.FREE_HEIGHT[1] + 1e-5))
        pitch = rec.cameras[:, 4]
        assert np.all((pitch >= rooms.FREE_PITCH[0] - 1e-5) & (pitch <= rooms.FREE_PITCH[1] + 1e-5))
        for obj in rec.metadata["objects"]:
            d = np.hypot(pos[:, 0] - obj["position"][0], pos[:, 1] - obj["position"][1])
            assert np.all(d >= SHAPE_SPECS[obj["shape"]].footprint_radius + rooms.FREE_OBJECT_CLEARANCE - 1e-5)
        steps = np.linalg.norm(np.diff(pos, axis=0), axis=-1)
        if trajectory:
            assert np.all(steps <= rooms.FREE_MAX_STEP + 1e-5) and np.all(steps > 0)
        else:
            assert steps.max() > rooms.FREE_MAX_STEP  # independent draws jump around
        assert len(np.unique(rec.cameras[:, 3])) == 10


def test_object_rotations_only_zero_the_yaws():
    a = rooms.generate(2, 9, views=2, size=16, camera="free", object_rotations=True, n_objects=3)
    b = rooms.generate(2, 9, views=2, size=16, camera="free", object_rotations=False, n_objects=3)
    assert [o["position"] for o in a.metadata["objects"]] == [o["position"] for o in b.metadata["objects"]]
    assert all(o["rotation"]["yaw"] == 0.0 for o in b.metadata["objects"])
    assert any(abs(o["rotation"]["yaw"]) > 1e-3 for o in a.metadata["objects"])
    np.testing.assert_array_equal(a.cameras, b.cameras)


def test_room_objects_do_not_overlap_and_count_is_in_range():
    counts = set()
    for index in range(40):
        layout = rooms.sample_layout(scene_rng(11, index), n_objects=(1, 3))
        counts.add(len(layout.objects))
        for i, a in enumerate(layout.objects):
            ra = SHAPE_SPECS[a.shape].footprint_radius
            assert np.hypot(*a.position) + ra <= rooms.OBJECT_AREA_RADIUS + 1e-9
            for b in layout.objects[i + 1 :]:
                gap = np.hypot(a.position[0] - b.position[0], a.position[1] - b.position[1])
                assert gap >= ra + SHAPE_SPECS[b.shape].footprint_radius + rooms.OBJECT_GAP - 1e-9
    assert counts == {1, 2, 3}
    assert len(rooms.sample_layout(scene_rng(0, 0), n_objects=5).objects) == 5


@pytest.mark.parametrize("parts", sm.PARTS)
def test_shepard_metzler_walk_is_self_avoiding_with_unit_steps(parts):
    for index in range(300):
        cells = sm.self_avoiding_walk(scene_rng(4, index), parts)
        assert cells.shape == (parts, 3) and cells.dtype.kind == "i"
        assert len({tuple(c) for c in cells}) == parts
        np.testing.assert_array_equal(np.abs(np.diff(cells, axis=0)).sum(-1), 1)
    rec = sm.generate(4, 0, views=2, size=16, parts=parts)
    offsets = np.asarray(rec.metadata["cube_offsets"])
    assert offsets.shape == (parts, 3) and len({tuple(c) for c in offsets}) == parts
    np.testing.assert_array_equal(rec.extras["cube_offsets"], offsets)
    assert set(rec.metadata["colours"]) <= {name for name, _ in sm.PALETTE}
    q = np.asarray(rec.metadata["rotation_quaternion_wxyz"])
    np.testing.assert_allclose(np.linalg.norm(q), 1.0, atol=1e-9)
    np.testing.assert_allclose(sm.quaternion_matrix(q) @ sm.quaternion_matrix(q).T, np.eye(3), atol=1e-9)


def test_shepard_metzler_cameras_at_fitted_distance_looking_at_origin():
    rec = sm.generate(0, 0, views=15, size=16)
    pos = rec.cameras[:, :3].astype(np.float64)
    dist = np.linalg.norm(pos, axis=-1)
    np.testing.assert_allclose(dist, rec.metadata["camera_distance"], rtol=1e-5)
    # Fitted per view: closer than the old worst-case distance, and varying with the direction.
    assert np.all(dist < sm.DISTANCE[7] * sm.FRAME_MARGIN) and np.ptp(dist) > 0.1
    fwd = -pose_matrix(rec.cameras.astype(np.float64))[:, :3, 2]
    np.testing.assert_allclose(fwd, -pos / dist[:, None], atol=1e-5)
    yaw, pitch = rec.cameras[:, 3], rec.cameras[:, 4]
    assert np.all((yaw >= -np.pi) & (yaw < np.pi)) and np.ptp(yaw) > 1.0
    assert np.all((pitch >= sm.PITCH_RANGE[0] - 1e-6) & (pitch <= sm.PITCH_RANGE[1] + 1e-6))
    ring = sm.generate(0, 1, views=6, size=16, trajectory=True)
    np.testing.assert_allclose(np.abs(wrap_angle(np.diff(ring.cameras[:, 3].astype(np.float64)))), np.pi / 3, atol=1e-5)
    np.testing.assert_allclose(ring.cameras[:, 4], ring.cameras[0, 4])


def test_fitted_distance_puts_the_farthest_corner_on_the_frame_edge():
    """Projected with the test's own pinhole model, the object's extreme corner lies at 1/margin of the half-frame."""
    obj = sm.sample_scene(3, 2, views=4, parts=7)
    corners = sm.object_corners(obj.offsets - obj.centre, obj.quaternion)
    size = 1000
    for pose in obj.poses:
        rc = np.array([_project(pose.viewpoint(), p, sm.FOVY_DEG, size)[:2] for p in corners])
        reach = np.abs(rc - size / 2).max() / (size / 2)
        np.testing.assert_allclose(reach, 1.0 / sm.FRAME_MARGIN, rtol=1e-4)


def test_shepard_metzler_object_fills_a_fair_part_of_every_view_without_clipping():
    size = 40
    for index in range(6):
        for parts in sm.PARTS:
            rec = sm.generate(9, index, views=15, size=size, parts=parts)
            fg = rec.frames.max(axis=-1) > 8  # background is black
            frac = fg.reshape(15, -1).mean(-1)
            assert np.all(frac > 0.1) and np.all(frac < 0.75), frac
            border = np.concatenate([fg[:, 0], fg[:, -1], fg[:, :, 0], fg[:, :, -1]], axis=-1)
            assert not border.any(), "object clipped by the image border"
            # The object is centred: its pixel centroid lies near the image centre.
            rows, cols = np.indices((size, size))
            # Every cube centre given by the metadata projects onto an object pixel.
            rot = sm.quaternion_matrix(np.asarray(rec.metadata["rotation_quaternion_wxyz"]))
            offsets = np.asarray(rec.metadata["cube_offsets"]) - np.asarray(rec.metadata["centre_offset"])
            for v in range(15):
                cy, cx = rows[fg[v]].mean(), cols[fg[v]].mean()
                assert abs(cy - size / 2) < size / 4 and abs(cx - size / 2) < size / 4
                for centre in offsets @ rot.T:
                    r, c, _ = _project(rec.cameras[v], centre, rec.metadata["fovy_deg"], size)
                    assert fg[v, int(r), int(c)], f"scene {index} view {v}: no cube at {centre}"


def test_shepard_metzler_straight_bar_fits_from_the_worst_side():
    """The longest object (7 cubes in a row) seen broadside spans the frame at its fitted distance, uncut."""
    size = 64
    bar = np.stack([np.arange(7) - 3.0, np.zeros(7), np.zeros(7)], axis=-1)
    yaw = 0.7
    # Rotate the bar about z so it lies across the camera's view direction.
    q = np.array([np.cos((yaw + np.pi / 2) / 2), 0.0, 0.0, np.sin((yaw + np.pi / 2) / 2)])
    d = sm.fitted_distance(sm.object_corners(bar, q), yaw, 0.0, sm.FOVY_DEG)
    assert d <= sm.DISTANCE[7] * sm.FRAME_MARGIN
    pose = CameraPose(tuple(-d * np.array([np.cos(yaw), np.sin(yaw), 0.0])), yaw, 0.0)
    frame = sm.render_object(bar, np.arange(7) % 2, q, [pose], size)[0]
    fg = frame.max(-1) > 8
    cols = np.flatnonzero(fg.any(0))
    assert cols.min() > 0 and cols.max() < size - 1 and cols.max() - cols.min() > size * 0.85


def test_generators_reuse_one_gl_context_per_template():
    def live_renderers() -> int:
        gc.collect()
        # type() rather than isinstance(): avoids touching lazy modules' deprecated attributes.
        return sum(1 for o in gc.get_objects() if type(o) is OffscreenRenderer and o._renderer is not None)

    rooms.generate(0, 0, views=2, size=16)
    sm.generate(0, 0, views=2, size=16)
    before, canvases = live_renderers(), open_canvas_count()
    for index in range(30):
        rooms.generate(0, index, views=2, size=16, camera="free" if index % 2 else "ring")
        sm.generate(0, index, views=2, size=16, parts=5 if index % 2 else 7)
    assert live_renderers() == before and open_canvas_count() == canvases
    for size in (17, 18, 19, 20, 21, 22):  # new sizes: least recently used templates are closed
        rooms.generate(0, 0, views=1, size=size)
    assert open_canvas_count() <= MAX_CANVASES
    close_canvases()
    assert open_canvas_count() == 0


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: rooms.generate(0, 0, camera="orbit"), r"'orbit'.*'ring', 'free'"),
        (lambda: rooms.generate(0, 0, n_objects=0), r"n_objects must lie in 1\.\.5"),
        (lambda: rooms.generate(0, 0, n_objects=(3, 1)), r"n_objects must lie in 1\.\.5"),
        (lambda: rooms.generate(0, 0, n_objects=6), r"n_objects must lie in 1\.\.5"),
        (lambda: rooms.generate(0, 0, n_objects="2"), r"n_objects must be an int"),
        (lambda: rooms.generate(0, 0, shapes=("pyramid",)), r"'pyramid'.*'box'.*'triangle_prism'"),
        (lambda: rooms.generate(0, 0, shapes=()), r"shapes must not be empty"),
        (lambda: rooms.generate(0, 0, angle_step=0.1), r"angle_step applies only"),
        (lambda: rooms.generate(0, 0, trajectory=True, angle_step=-1.0), r"angle_step must be a positive"),
        (lambda: rooms.generate(0, 0, views=0), r"views must be >= 1"),
        (lambda: sm.generate(0, 0, parts=6), r"parts must be one of 5, 7"),
        (lambda: sm.generate(0, 0, parts=True), r"parts must be one of 5, 7"),
        (lambda: sm.generate(0, 0, pitch_range=(-2.0, 0.0)), r"pitch_range must satisfy"),
        (lambda: sm.generate(0, 0, pitch_range=0.3), r"pitch_range must be a \(low, high\)"),
        (lambda: sm.generate(0, 0, size=4), r"size must be >= 8"),
    ],
)
def test_bad_options_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
