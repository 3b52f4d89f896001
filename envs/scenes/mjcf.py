"""MJCF snippets for the GQN "rooms" shapes: the seven object shapes as geoms resting on z = 0.

MuJoCo has no cone, icosahedron or prism primitive, so those are mesh assets whose vertices are
computed here with numpy; MuJoCo builds their convex hull (the shapes are convex, so the hull is
the shape). Every shape is defined in its own body frame with its base on ``z = 0`` and centred
on the vertical axis, so placing an object on the floor only needs a position ``(x, y, 0)`` and
a yaw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The seven object shapes of GQN's rooms datasets.
SHAPES: tuple[str, ...] = ("box", "sphere", "cylinder", "capsule", "cone", "icosahedron", "triangle_prism")

#: Geom group that the default ``MjvOption`` hides (it shows groups 0-2): used to hide unused slots.
HIDDEN_GROUP = 3
#: Geom group of visible geoms.
VISIBLE_GROUP = 0

_GOLDEN = (1.0 + np.sqrt(5.0)) / 2.0


def cone_vertices(radius: float, height: float, segments: int = 32) -> np.ndarray:
    """Vertices ``[segments+1, 3]`` of a cone: a base circle on ``z = 0`` and the apex at ``z = height``."""
    if segments < 3:
        raise ValueError(f"a cone needs at least 3 base segments, got {segments}")
    a = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    base = np.stack([radius * np.cos(a), radius * np.sin(a), np.zeros_like(a)], axis=-1)
    return np.concatenate([base, [[0.0, 0.0, height]]], axis=0)


def icosahedron_vertices(circumradius: float) -> np.ndarray:
    """Vertices ``[12, 3]`` of a regular icosahedron resting on one face on ``z = 0``."""
    g = _GOLDEN
    v = []
    for s1 in (-1.0, 1.0):
        for s2 in (-1.0, 1.0):
            v += [(0.0, s1, s2 * g), (s1, s2 * g, 0.0), (s2 * g, 0.0, s1)]
    v = np.asarray(v, dtype=np.float64)
    # (0, 1, g), (0, -1, g) and (g, 0, 1) span one face: turn its normal to +z so the opposite face
    # lies flat on the floor.
    n = np.array([g, 0.0, 2.0 * g + 1.0])
    v = v @ _rotation_between(n / np.linalg.norm(n), np.array([0.0, 0.0, 1.0])).T
    v *= circumradius / np.linalg.norm(v[0])
    v[:, 2] -= v[:, 2].min()
    return v


def triangle_prism_vertices(side: float, length: float) -> np.ndarray:
    """Vertices ``[6, 3]`` of a prism lying on a rectangular face: an equilateral triangle (in x-z,
    base on ``z = 0``) extruded along y."""
    h = side * np.sqrt(3.0) / 2.0
    tri = np.array([[-side / 2.0, 0.0], [side / 2.0, 0.0], [0.0, h]])
    return np.array([[x, y, z] for y in (-length / 2.0, length / 2.0) for x, z in tri])


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rotation matrix turning unit vector ``a`` onto unit vector ``b`` (Rodrigues)."""
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if np.linalg.norm(v) < 1e-12:
        if c > 0:
            return np.eye(3)
        # Opposite vectors: half a turn about any axis orthogonal to a.
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


@dataclass(frozen=True)
class ShapeSpec:
    """Geometry of one object shape, base on ``z = 0`` in its body frame."""

    name: str
    """One of :data:`SHAPES`."""
    footprint_radius: float
    """Largest horizontal distance of the shape from its vertical axis (metres), for placement."""
    height: float
    """Height of the shape's top above the floor (metres)."""
    vertices: np.ndarray | None = None
    """Mesh vertices ``[n, 3]`` for shapes built as meshes, else ``None``."""

    def geom_xml(self, geom_name: str, group: int = VISIBLE_GROUP) -> str:
        """The MJCF ``<geom>`` of this shape (mesh shapes refer to the asset named ``mesh_<name>``)."""
        common = f'name="{geom_name}" group="{group}" rgba="0.5 0.5 0.5 1" contype="0" conaffinity="0"'
        if self.name == "box":
            s = self.height / 2.0
            return f'<geom {common} type="box" size="{s:.4f} {s:.4f} {s:.4f}" pos="0 0 {s:.4f}"/>'
        if self.name == "sphere":
            r = self.height / 2.0
            return f'<geom {common} type="sphere" size="{r:.4f}" pos="0 0 {r:.4f}"/>'
        if self.name == "cylinder":
            r, hh = self.footprint_radius, self.height / 2.0
            return f'<geom {common} type="cylinder" size="{r:.4f} {hh:.4f}" pos="0 0 {hh:.4f}"/>'
        if self.name == "capsule":
            r = self.footprint_radius
            half = self.height / 2.0 - r
            return f'<geom {common} type="capsule" size="{r:.4f} {half:.4f}" pos="0 0 {r + half:.4f}"/>'
        return f'<geom {common} type="mesh" mesh="mesh_{self.name}"/>'

    def mesh_xml(self) -> str:
        """The MJCF ``<mesh>`` asset of a mesh shape; empty for primitives."""
        if self.vertices is None:
            return ""
        flat = " ".join(f"{x:.5f}" for x in self.vertices.reshape(-1))
        return f'<mesh name="mesh_{self.name}" vertex="{flat}"/>'


def _mesh_spec(name: str, vertices: np.ndarray) -> ShapeSpec:
    radius = float(np.max(np.linalg.norm(vertices[:, :2], axis=-1)))
    return ShapeSpec(name, radius, float(vertices[:, 2].max()), vertices)


#: Geometry of every shape; sizes are chosen so each is about 0.6-0.8 m across.
SHAPE_SPECS: dict[str, ShapeSpec] = {
    "box": ShapeSpec("box", footprint_radius=0.3 * np.sqrt(2.0), height=0.6),
    "sphere": ShapeSpec("sphere", footprint_radius=0.35, height=0.7),
    "cylinder": ShapeSpec("cylinder", footprint_radius=0.3, height=0.7),
    "capsule": ShapeSpec("capsule", footprint_radius=0.25, height=0.9),
    "cone": _mesh_spec("cone", cone_vertices(0.35, 0.8)),
    "icosahedron": _mesh_spec("icosahedron", icosahedron_vertices(0.4)),
    "triangle_prism": _mesh_spec("triangle_prism", triangle_prism_vertices(0.7, 0.6)),
}


def shape_assets_xml() -> str:
    """All mesh assets the shapes need (to place inside ``<asset>``)."""
    return "".join(spec.mesh_xml() for spec in SHAPE_SPECS.values())


def yaw_quaternion(yaw: float) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` of a rotation by ``yaw`` radians about +z."""
    return np.array([np.cos(yaw / 2.0), 0.0, 0.0, np.sin(yaw / 2.0)])


def check_shapes(shapes: object) -> tuple[str, ...]:
    """Validate a non-empty sequence of shape names; raises ``ValueError`` listing valid names."""
    if isinstance(shapes, str):
        shapes = (shapes,)
    try:
        names = tuple(shapes)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"shapes must be a sequence of shape names from {SHAPES}, got {shapes!r}") from None
    if not names:
        raise ValueError(f"shapes must not be empty; valid values: {', '.join(map(repr, SHAPES))}")
    for s in names:
        if s not in SHAPE_SPECS:
            raise ValueError(f"unknown shape {s!r}; valid values: {', '.join(map(repr, SHAPES))}")
    return names
