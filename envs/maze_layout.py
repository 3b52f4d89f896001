"""Maze layouts on a small square grid (GQN "mazes": 7x7, 1-2 rooms plus corridors).

Pure numpy and Python: generation, shortest paths, and the grid geometry that the maze
environment needs (disc collision, ray distances, wall boxes). Nothing here knows about
MuJoCo, so it is cheap to import and to test.

Grid conventions
----------------
``grid`` is a ``uint8 [n, n]`` array, ``WALL`` (1) or ``FREE`` (0); row 0 is the *north*
(top) row of the map and everything outside the grid counts as wall. Continuous geometry uses
the *grid frame*, in cell units: ``gx`` grows with the column and ``gy`` grows northwards, so
cell ``(row, col)`` covers ``gx in [col, col + 1)`` and ``gy in [n - 1 - row, n - row)``.
Angles are counter-clockwise from +gx, exactly as yaw in the world frame (the environment maps
grid to world by a shift and a scale, see :mod:`envs.maze`).

How a layout is built (:func:`generate_maze`)
---------------------------------------------
Cells whose row and column are both even are *nodes* (a 4x4 lattice on a 7x7 grid); the cells
between two neighbouring nodes are *doors* that are free when a corridor joins them; cells with
two odd coordinates are pillars and stay walls outside rooms. A randomised depth-first search
gives a spanning tree of the nodes (so every free cell is reachable), a few extra doors add
loops, and 1-2 rectangular rooms (3x3, 3x5 or 5x3 cells, aligned to nodes, not overlapping)
are cleared. Because a pillar lies in every 2x2 block of cells, a 2x2 block of free cells can
only occur inside a room; :func:`count_rooms` uses that to recount rooms from the grid alone.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

FREE: int = 0
WALL: int = 1
#: Grid side of the GQN mazes.
GRID_SIZE: int = 7
#: Wall and floor patterns of a maze (drawn per maze; the floor ones match :data:`envs.domain.TEXTURES`).
WALL_TEXTURES: tuple[str, ...] = ("none", "tiles", "checker")
FLOOR_TEXTURES: tuple[str, ...] = ("none", "checker", "grid")
#: Room shapes in nodes (rows, cols): 2x2 nodes = 3x3 cells, 2x3 = 3x5, 3x2 = 5x3.
ROOM_SHAPES: tuple[tuple[int, int], ...] = ((2, 2), (2, 3), (3, 2))

Cell = tuple[int, int]


@dataclass(frozen=True)
class Room:
    """A rectangular free area, inclusive cell bounds."""

    row0: int
    col0: int
    row1: int
    col1: int

    def cells(self) -> list[Cell]:
        """All cells of the room."""
        return [(r, c) for r in range(self.row0, self.row1 + 1) for c in range(self.col0, self.col1 + 1)]


@dataclass(frozen=True)
class MazeAppearance:
    """Per-maze wall and floor look (colours RGB in [0, 1]), drawn from the maze seed as in GQN."""

    wall_rgb: tuple[float, float, float]
    """Wall colour."""
    floor_rgb: tuple[float, float, float]
    """Floor colour."""
    wall_texture: str
    """Wall pattern, one of :data:`WALL_TEXTURES`."""
    floor_texture: str
    """Floor pattern, one of :data:`FLOOR_TEXTURES`."""


@dataclass(frozen=True)
class MazeLayout:
    """One maze: its grid, rooms, goal cell and appearance, all determined by ``seed``."""

    grid: np.ndarray
    """uint8 [n, n], 1 = wall, 0 = free; row 0 is north."""
    rooms: tuple[Room, ...]
    """The rooms that were cleared."""
    goal: Cell
    """Cell of the goal object (a free cell)."""
    seed: int
    """Seed the layout was generated from."""
    appearance: MazeAppearance
    """Wall/floor colours and patterns of this maze."""

    @property
    def size(self) -> int:
        """Grid side ``n``."""
        return int(self.grid.shape[0])

    def free_cells(self) -> list[Cell]:
        """Free cells in row-major order."""
        return [(int(r), int(c)) for r, c in zip(*np.nonzero(self.grid == FREE))]

    def summary(self) -> dict:
        """JSON-serialisable description (for dataset metadata)."""
        return {
            "maze_seed": int(self.seed),
            "grid_size": self.size,
            "rooms": [asdict(r) for r in self.rooms],
            "n_rooms": len(self.rooms),
            "n_free_cells": int((self.grid == FREE).sum()),
            "goal": list(self.goal),
            "appearance": asdict(self.appearance),
            "rows": ["".join("#" if v else "." for v in row) for row in self.grid.tolist()],
        }


# --------------------------------------------------------------------------- generation


def generate_maze(
    seed: int, size: int = GRID_SIZE, rooms: tuple[int, int] = (1, 2), extra_doors: tuple[int, int] = (0, 1)
) -> MazeLayout:
    """The maze of ``seed``: deterministic, every free cell reachable (see module doc).

    Args:
        seed: any non-negative integer; the same seed always gives the same maze.
        size: odd grid side >= 5 (7 for GQN mazes).
        rooms: inclusive range of the number of rooms.
        extra_doors: inclusive range of extra doors opened after the spanning tree (loops).
    """
    if size < 5 or size % 2 == 0:
        raise ValueError(f"maze size must be an odd integer >= 5, got {size}")
    if not 0 <= rooms[0] <= rooms[1]:
        raise ValueError(f"rooms must be a range (lo, hi) with 0 <= lo <= hi, got {rooms}")
    layout_ss, look_ss = np.random.SeedSequence([int(seed), 0x6D617A65]).spawn(2)
    rng = np.random.default_rng(layout_ss)
    nodes = (size + 1) // 2
    grid = np.ones((size, size), dtype=np.uint8)
    grid[::2, ::2] = FREE

    # Spanning tree of the node lattice by randomised depth-first search.
    visited = np.zeros((nodes, nodes), dtype=bool)
    start = (int(rng.integers(nodes)), int(rng.integers(nodes)))
    visited[start] = True
    stack = [start]
    closed_doors: list[tuple[Cell, Cell]] = []
    while stack:
        i, j = stack[-1]
        options = [
            (i + di, j + dj)
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))
            if 0 <= i + di < nodes and 0 <= j + dj < nodes and not visited[i + di, j + dj]
        ]
        if not options:
            stack.pop()
            continue
        ni, nj = options[int(rng.integers(len(options)))]
        grid[i + ni, j + nj] = FREE  # the door between nodes (2i, 2j) and (2ni, 2nj)
        visited[ni, nj] = True
        stack.append((ni, nj))
    for i in range(nodes):
        for j in range(nodes):
            for ni, nj in ((i + 1, j), (i, j + 1)):
                if ni < nodes and nj < nodes and grid[i + ni, j + nj] == WALL:
                    closed_doors.append(((i, j), (ni, nj)))
    n_extra = int(rng.integers(extra_doors[0], extra_doors[1] + 1))
    for k in rng.permutation(len(closed_doors))[:n_extra]:
        (i, j), (ni, nj) = closed_doors[int(k)]
        grid[i + ni, j + nj] = FREE

    # Rooms: node-aligned rectangles that do not overlap (in node space).
    n_rooms = int(rng.integers(rooms[0], rooms[1] + 1))
    placed: list[Room] = []
    for _ in range(100):  # a central room can block a second one: start the placement over
        taken = np.zeros((nodes, nodes), dtype=bool)
        placed = []
        for _ in range(20):
            if len(placed) == n_rooms:
                break
            h, w = ROOM_SHAPES[int(rng.integers(len(ROOM_SHAPES)))]
            if h > nodes or w > nodes:
                continue
            i0, j0 = int(rng.integers(nodes - h + 1)), int(rng.integers(nodes - w + 1))
            if taken[i0 : i0 + h, j0 : j0 + w].any():
                continue
            taken[i0 : i0 + h, j0 : j0 + w] = True
            placed.append(Room(2 * i0, 2 * j0, 2 * (i0 + h - 1), 2 * (j0 + w - 1)))
        if len(placed) == n_rooms:
            break
    else:  # pragma: no cover - a 4x4 node lattice always fits two rooms
        raise RuntimeError(f"could not place {n_rooms} rooms in a {size}x{size} maze")
    for room in placed:
        grid[room.row0 : room.row1 + 1, room.col0 : room.col1 + 1] = FREE

    free = list(zip(*np.nonzero(grid == FREE)))
    goal = free[int(rng.integers(len(free)))]
    return MazeLayout(
        grid=grid,
        rooms=tuple(placed),
        goal=(int(goal[0]), int(goal[1])),
        seed=int(seed),
        appearance=random_appearance(np.random.default_rng(look_ss)),
    )


def random_appearance(rng: np.random.Generator) -> MazeAppearance:
    """Random wall and floor colours (kept apart in brightness) and patterns."""
    wall = rng.uniform(0.15, 0.95, 3)
    floor = rng.uniform(0.15, 0.95, 3)
    # Keep walls and floor distinguishable: move the floor's brightness away from the walls'.
    diff = float(floor.mean() - wall.mean())
    if abs(diff) < 0.15:
        direction = 1.0 if wall.mean() < 0.5 else -1.0
        floor = np.clip(floor + direction * 0.3 - diff, 0.02, 1.0)
    return MazeAppearance(
        wall_rgb=tuple(float(v) for v in wall),
        floor_rgb=tuple(float(v) for v in floor),
        wall_texture=str(WALL_TEXTURES[int(rng.integers(len(WALL_TEXTURES)))]),
        floor_texture=str(FLOOR_TEXTURES[int(rng.integers(len(FLOOR_TEXTURES)))]),
    )


# --------------------------------------------------------------------------- graph queries


def _neighbours(grid: np.ndarray, cell: Cell):
    n = grid.shape[0]
    r, c = cell
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        rr, cc = r + dr, c + dc
        if 0 <= rr < n and 0 <= cc < n and grid[rr, cc] == FREE:
            yield rr, cc


def bfs_distances(grid: np.ndarray, source: Cell) -> np.ndarray:
    """Steps (4-connected) from ``source`` to every cell; -1 for walls and unreachable cells."""
    dist = np.full(grid.shape, -1, dtype=np.int32)
    if grid[source] != FREE:
        raise ValueError(f"source cell {source} is a wall")
    dist[source] = 0
    queue = deque([source])
    while queue:
        cell = queue.popleft()
        for nb in _neighbours(grid, cell):
            if dist[nb] < 0:
                dist[nb] = dist[cell] + 1
                queue.append(nb)
    return dist


def shortest_path(grid: np.ndarray, start: Cell, goal: Cell) -> list[Cell]:
    """A shortest 4-connected path of cells from ``start`` to ``goal`` (both included)."""
    dist = bfs_distances(grid, goal)
    if dist[start] < 0:
        raise ValueError(f"no path from {start} to {goal}")
    path = [tuple(start)]
    while path[-1] != tuple(goal):
        path.append(min(_neighbours(grid, path[-1]), key=lambda nb: dist[nb] if dist[nb] >= 0 else 1 << 30))
    return [(int(r), int(c)) for r, c in path]


def count_rooms(grid: np.ndarray) -> int:
    """Number of rooms recounted from the grid: connected groups of free 2x2 blocks."""
    block = (grid[:-1, :-1] == FREE) & (grid[1:, :-1] == FREE) & (grid[:-1, 1:] == FREE) & (grid[1:, 1:] == FREE)
    in_room = np.zeros(grid.shape, dtype=bool)
    for r, c in zip(*np.nonzero(block)):
        in_room[r : r + 2, c : c + 2] = True
    seen = np.zeros(grid.shape, dtype=bool)
    count = 0
    for r, c in zip(*np.nonzero(in_room)):
        if seen[r, c]:
            continue
        count += 1
        seen[r, c] = True
        queue = deque([(r, c)])
        while queue:
            cr, cc = queue.popleft()
            for rr, c2 in ((cr - 1, cc), (cr + 1, cc), (cr, cc - 1), (cr, cc + 1)):
                if 0 <= rr < grid.shape[0] and 0 <= c2 < grid.shape[1] and in_room[rr, c2] and not seen[rr, c2]:
                    seen[rr, c2] = True
                    queue.append((rr, c2))
    return count


def wall_rectangles(grid: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Wall cells merged into few rectangles ``(row0, col0, row1, col1)`` (inclusive).

    Greedy cover (extend a run along one axis, then grow it along the other), tried row-first
    and column-first; the shorter list wins. Every wall cell lies in exactly one rectangle.
    """

    def cover(g: np.ndarray) -> list[tuple[int, int, int, int]]:
        used = np.zeros(g.shape, dtype=bool)
        rects = []
        rows, cols = g.shape
        for r in range(rows):
            for c in range(cols):
                if g[r, c] != WALL or used[r, c]:
                    continue
                c1 = c
                while c1 + 1 < cols and g[r, c1 + 1] == WALL and not used[r, c1 + 1]:
                    c1 += 1
                r1 = r
                while r1 + 1 < rows and np.all(g[r1 + 1, c : c1 + 1] == WALL) and not used[r1 + 1, c : c1 + 1].any():
                    r1 += 1
                used[r : r1 + 1, c : c1 + 1] = True
                rects.append((r, c, r1, c1))
        return rects

    by_rows = cover(grid)
    by_cols = [(c0, r0, c1, r1) for r0, c0, r1, c1 in cover(grid.T)]
    return by_rows if len(by_rows) <= len(by_cols) else by_cols


# --------------------------------------------------------------------------- continuous geometry (grid frame)


def cell_centre(grid_size: int, cell: Cell) -> tuple[float, float]:
    """Grid-frame centre ``(gx, gy)`` of a cell."""
    r, c = cell
    return c + 0.5, grid_size - 1 - r + 0.5


def cell_at(grid_size: int, gx: float, gy: float) -> Cell:
    """Cell ``(row, col)`` containing a grid-frame point (may lie outside the grid)."""
    return grid_size - 1 - math.floor(gy), math.floor(gx)


_PAD = 3


class GridGeometry:
    """Fast disc collision and ray casting against a grid's walls (grid frame, cell units).

    Walls are unit squares; everything outside the grid is wall. Hand-written (rather than a
    physics engine) because the agent is kinematic and a few Python float operations per step
    are far cheaper than any general collision library for a 7x7 grid.
    """

    def __init__(self, grid: np.ndarray) -> None:
        self.n = int(grid.shape[0])
        # Python lists indexed [gx][gy] (grid-frame cell coordinates) with a wall margin of
        # _PAD cells: scalar lookups are several times faster than numpy's for a few cells.
        padded = np.ones((self.n + 2 * _PAD, self.n + 2 * _PAD), dtype=bool)
        padded[_PAD:-_PAD, _PAD:-_PAD] = np.asarray(grid)[::-1, :].T != FREE
        self._wall = padded.tolist()

    def is_wall(self, row: int, col: int) -> bool:
        """Whether a cell is a wall (outside the grid counts as wall)."""
        if 0 <= row < self.n and 0 <= col < self.n:
            return self._wall[col + _PAD][self.n - 1 - row + _PAD]
        return True

    def _wall_at(self, cx: int, cy: int) -> bool:
        """Whether the grid-frame unit square with corner ``(cx, cy)`` is a wall."""
        if -_PAD <= cx < self.n + _PAD and -_PAD <= cy < self.n + _PAD:
            return self._wall[cx + _PAD][cy + _PAD]
        return True

    def _push_out(self, x: float, y: float, radius: float) -> tuple[float, float]:
        """Move a disc out of the wall squares around it (a few relaxation passes)."""
        r2 = radius * radius
        wall = self._wall
        lo, hi = 1 - _PAD, self.n + _PAD - 2
        for _ in range(3):
            moved = False
            cx, cy = math.floor(x), math.floor(y)
            if not (lo <= cx <= hi and lo <= cy <= hi):
                raise ValueError(f"disc at ({x:.3f}, {y:.3f}) is outside the maze")
            for sx in (cx - 1, cx, cx + 1):
                column = wall[sx + _PAD]
                for sy in (cy - 1, cy, cy + 1):
                    if not column[sy + _PAD]:
                        continue
                    px = min(max(x, sx), sx + 1.0)
                    py = min(max(y, sy), sy + 1.0)
                    dx, dy = x - px, y - py
                    d2 = dx * dx + dy * dy
                    if d2 >= r2:
                        continue
                    if d2 > 1e-18:
                        d = math.sqrt(d2)
                        x += dx / d * (radius - d)
                        y += dy / d * (radius - d)
                    else:  # centre inside the square: leave through the nearest side
                        exits = (
                            (x - sx + radius, -1.0, 0.0),
                            (sx + 1 - x + radius, 1.0, 0.0),
                            (y - sy + radius, 0.0, -1.0),
                            (sy + 1 - y + radius, 0.0, 1.0),
                        )
                        dist, ux, uy = min(exits)
                        x += ux * dist
                        y += uy * dist
                    moved = True
            if not moved:
                break
        return x, y

    def place_disc(self, x: float, y: float, radius: float) -> tuple[float, float]:
        """The nearest position to ``(x, y)`` where a disc of ``radius`` touches no wall."""
        return self._push_out(x, y, radius)

    def move_disc(self, x: float, y: float, dx: float, dy: float, radius: float) -> tuple[float, float, bool]:
        """Move a disc by ``(dx, dy)``, sliding along walls; returns ``(x, y, collided)``.

        The motion is split into sub-steps of at most ``radius / 2`` so the disc never tunnels;
        after each sub-step the disc is pushed out of walls along the contact normal, which
        removes the normal part of the motion and keeps the tangential part (sliding).
        """
        length = math.hypot(dx, dy)
        if length == 0.0:
            return x, y, False
        steps = max(1, math.ceil(length / (0.5 * radius)))
        sx, sy = dx / steps, dy / steps
        collided = False
        for _ in range(steps):
            tx, ty = x + sx, y + sy
            x, y = self._push_out(tx, ty, radius)
            if abs(x - tx) > 1e-9 or abs(y - ty) > 1e-9:
                collided = True
        return x, y, collided

    def clearance(self, x: float, y: float) -> float:
        """Distance from a point to the nearest wall square (0 inside a wall)."""
        best = math.inf
        cx, cy = math.floor(x), math.floor(y)
        for sx in range(cx - 2, cx + 3):
            for sy in range(cy - 2, cy + 3):
                if self._wall_at(sx, sy):
                    px = min(max(x, sx), sx + 1.0)
                    py = min(max(y, sy), sy + 1.0)
                    best = min(best, math.hypot(x - px, y - py))
        return best

    def ray_distance(self, x: float, y: float, angle: float, max_dist: float) -> float:
        """Distance along a ray from ``(x, y)`` to the first wall square, capped at ``max_dist``.

        Exact grid traversal (Amanatides-Woo): visit the cells the ray crosses in order.
        """
        ux, uy = math.cos(angle), math.sin(angle)
        cx, cy = math.floor(x), math.floor(y)
        if self._wall_at(cx, cy):
            return 0.0
        step_x = 1 if ux > 0 else -1
        step_y = 1 if uy > 0 else -1
        t_dx = abs(1.0 / ux) if ux != 0 else math.inf
        t_dy = abs(1.0 / uy) if uy != 0 else math.inf
        t_x = ((cx + 1 - x) if ux > 0 else (x - cx)) * t_dx if ux != 0 else math.inf
        t_y = ((cy + 1 - y) if uy > 0 else (y - cy)) * t_dy if uy != 0 else math.inf
        while True:
            if t_x < t_y:
                t = t_x
                cx += step_x
                t_x += t_dx
            else:
                t = t_y
                cy += step_y
                t_y += t_dy
            if t >= max_dist:
                return max_dist
            if self._wall_at(cx, cy):
                return t


def sample_open_heading(
    geometry: GridGeometry, x: float, y: float, rng: np.random.Generator, min_distance: float, candidates: int = 16
) -> float:
    """A heading (radians) from ``(x, y)`` that faces open space, drawn from ``rng``.

    Draws ``candidates`` uniform headings in ``[-pi, pi)`` at once (a fixed number of draws, so
    the generator's state after the call does not depend on the maze) and returns the first whose
    straight-ahead free distance (:meth:`GridGeometry.ray_distance`, cell units) is at least
    ``min_distance``: a uniform heading among the open ones. If none is, the most open one is
    returned. ``min_distance <= 0`` gives a plain uniform heading.
    """
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    headings = rng.uniform(-math.pi, math.pi, size=int(candidates))
    if min_distance <= 0:
        return float(headings[0])
    best, best_d = float(headings[0]), -1.0
    for h in headings:
        d = geometry.ray_distance(x, y, float(h), min_distance)
        if d >= min_distance:
            return float(h)
        if d > best_d:
            best, best_d = float(h), d
    return best


# --------------------------------------------------------------------------- top-down map

#: Colours of the top-down map (uint8 RGB): fixed, so maps of different mazes are comparable.
MAP_COLOURS: dict[str, tuple[int, int, int]] = {
    "wall": (40, 40, 40),
    "floor": (235, 235, 235),
    "goal": (220, 30, 30),
    "agent": (30, 80, 230),
    "heading": (250, 200, 0),
}


def rasterise_map(
    grid: np.ndarray,
    size: int,
    goal: tuple[float, float] | None = None,
    agent: tuple[float, float, float] | None = None,
    goal_radius: float = 0.3,
    agent_radius: float = 0.25,
) -> np.ndarray:
    """Top-down map of a maze as a uint8 ``[size, size, 3]`` image, north up.

    Walls and floor fill their cells (:data:`MAP_COLOURS`); ``goal`` ``(gx, gy)`` is drawn as a
    disc, ``agent`` ``(gx, gy, heading)`` as a disc with a small heading mark in front. Radii
    are in cells; discs are at least one pixel wide at any size.
    """
    if size < 1:
        raise ValueError(f"map size must be >= 1, got {size}")
    n = grid.shape[0]
    idx = ((np.arange(size) + 0.5) * (n / size)).astype(np.int64)
    palette = np.array([MAP_COLOURS["floor"], MAP_COLOURS["wall"]], dtype=np.uint8)
    image = palette[grid[idx[:, None], idx[None, :]].astype(np.int64)]
    centres = (np.arange(size) + 0.5) * (n / size)  # grid-frame coordinate of pixel centres
    px_x = centres[None, :]
    px_y = n - centres[:, None]
    pixel = n / size

    def disc(cx: float, cy: float, radius: float, colour: str) -> None:
        r = max(radius, 0.75 * pixel)
        image[(px_x - cx) ** 2 + (px_y - cy) ** 2 <= r * r] = MAP_COLOURS[colour]

    if goal is not None:
        disc(goal[0], goal[1], goal_radius, "goal")
    if agent is not None:
        ax, ay, heading = agent
        disc(ax, ay, agent_radius, "agent")
        disc(
            ax + 0.7 * agent_radius * math.cos(heading),
            ay + 0.7 * agent_radius * math.sin(heading),
            0.4 * agent_radius,
            "heading",
        )
    return image
