"""Visual domain parameters: the knobs that separate a "sim" domain from a shifted "real" one.

A :class:`Domain` holds colours, floor texture, lighting and camera noise. ``DOMAINS`` names
presets; ``domain="randomised"`` in an environment draws a fresh :func:`random_domain` at every
reset. Domains are plain data (JSON-serialisable with :func:`dataclasses.asdict`) so a dataset
records the one each scene used.

**Target contrast.** A random domain's target must stand out from the floor it lies on. The
contrast of a target against a floor (:func:`target_contrast`) is the CIE76 colour difference
Delta E*ab (Euclidean distance in CIELAB, D65 white, colours read as sRGB) between the target
colour and each tone the floor shows (its colour and, for ``checker``/``grid`` textures, the
second tone of :func:`floor_texture_xml`), taken at full light and at :data:`DIM_LIGHT` times the
light (linear RGB) so that dark scenes count; the smallest of these. :func:`random_domain` redraws
the target colour until the contrast is at least :data:`MIN_TARGET_CONTRAST` (40: a clearly
different colour; 2.3 is a just-noticeable difference, olive on green is about 20).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

TEXTURES: tuple[str, ...] = ("none", "checker", "grid")

MIN_TARGET_CONTRAST = 40.0
"""Least :func:`target_contrast` (CIE76 Delta E*ab) of a random domain's target against its floor."""
DIM_LIGHT = 0.35
"""Light factor (linear RGB) of the dim case of :func:`target_contrast`: about the darkest a lit
surface gets under a random domain's lights (ambient >= 0.15, diffuse >= 0.5)."""
_MAX_TARGET_DRAWS = 1000


@dataclass(frozen=True)
class Domain:
    """Appearance of a scene. Colours are RGB in [0, 1]."""

    floor_rgb: tuple[float, float, float] = (0.55, 0.55, 0.5)
    """Floor (or table) colour."""
    floor_texture: str = "checker"
    """Floor pattern: one of ``TEXTURES``."""
    wall_rgb: tuple[float, float, float] = (0.6, 0.65, 0.75)
    """Wall colour (mazes and rooms)."""
    body_rgb: tuple[float, float, float] = (0.25, 0.3, 0.4)
    """Main colour of the agent's body (the arm's links)."""
    accent_rgb: tuple[float, float, float] = (0.8, 0.8, 0.85)
    """Second colour of the agent's body (joints, fingers)."""
    target_rgb: tuple[float, float, float] = (0.9, 0.15, 0.15)
    """Colour of the target or goal object."""
    light_direction: tuple[float, float, float] = (0.3, 0.2, -1.0)
    """Direction the main directional light shines along (normalised when used)."""
    light_intensity: float = 0.8
    """Diffuse intensity of the main light, in [0, 1.5]."""
    ambient: float = 0.3
    """Ambient light level, in [0, 1]."""
    pixel_noise_std: float = 0.0
    """Std of additive Gaussian camera noise, in 0..255 pixel units (0 = clean)."""
    fovy_jitter_deg: float = 0.0
    """Camera intrinsics jitter: each episode's vertical field of view is the model's plus a
    uniform draw in ``[-fovy_jitter_deg, +fovy_jitter_deg]`` degrees (0 = the model's own)."""
    blur_sigma: float = 0.0
    """Std (pixels of the rendered image) of a Gaussian blur applied before the noise (0 = sharp)."""
    distractor_colours: bool = False
    """Each episode redraws the colours of walls, floor and the arm's accent parts at random
    (:func:`episode_appearance`), the target keeping a contrast >= :data:`MIN_TARGET_CONTRAST`."""

    def __post_init__(self) -> None:
        if self.floor_texture not in TEXTURES:
            raise ValueError(f"unknown floor_texture {self.floor_texture!r}; valid: {', '.join(TEXTURES)}")
        for name in ("pixel_noise_std", "fovy_jitter_deg", "blur_sigma"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.fovy_jitter_deg >= 30:
            raise ValueError(f"fovy_jitter_deg must be < 30 degrees, got {self.fovy_jitter_deg}")


DOMAINS: dict[str, Domain] = {
    "sim": Domain(),
    # A shifted appearance for sim-to-real studies: other colours, warmer side light, sensor noise.
    "real": Domain(
        floor_rgb=(0.42, 0.33, 0.25),
        floor_texture="grid",
        wall_rgb=(0.75, 0.72, 0.6),
        body_rgb=(0.12, 0.12, 0.12),
        accent_rgb=(0.55, 0.5, 0.45),
        target_rgb=(0.95, 0.55, 0.1),
        light_direction=(-0.6, 0.4, -0.8),
        light_intensity=1.0,
        ambient=0.2,
        pixel_noise_std=6.0,
    ),
}
# "real" plus what a real camera adds: per-episode field-of-view jitter (intrinsics), optical blur,
# stronger noise, and distractor colours on every surface but the target.
DOMAINS["real-hard"] = replace(
    DOMAINS["real"], pixel_noise_std=8.0, fovy_jitter_deg=8.0, blur_sigma=0.8, distractor_colours=True
)
DOMAIN_CHOICES: tuple[str, ...] = (*DOMAINS, "randomised")


def srgb_to_lab(rgb, light: float = 1.0) -> np.ndarray:
    """CIELAB (D65) of sRGB colours ``[..., 3]`` in [0, 1], after scaling their linear RGB by ``light``."""
    c = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4) * float(light)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE
    f = np.where(xyz > (6.0 / 29.0) ** 3, np.cbrt(xyz), xyz / (3.0 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def floor_tones(floor_rgb: tuple[float, float, float], floor_texture: str) -> list[tuple[float, float, float]]:
    """The colours a floor shows: its colour, plus the second tone of a ``checker`` or ``grid`` texture."""
    if floor_texture not in TEXTURES:
        raise ValueError(f"unknown floor_texture {floor_texture!r}; valid: {', '.join(TEXTURES)}")
    tones = [tuple(float(c) for c in floor_rgb)]
    if floor_texture != "none":
        tones.append(tuple(min(1.0, c * 0.75 + 0.05) for c in floor_rgb))
    return tones


def target_contrast(
    target_rgb: tuple[float, float, float], floor_rgb: tuple[float, float, float], floor_texture: str = "none"
) -> float:
    """Contrast of a target colour against a floor (see the module doc): the least CIE76 Delta E*ab."""
    return float(
        min(
            np.linalg.norm(srgb_to_lab(target_rgb, light) - srgb_to_lab(tone, light))
            for tone in floor_tones(floor_rgb, floor_texture)
            for light in (1.0, DIM_LIGHT)
        )
    )


def random_domain(rng: np.random.Generator) -> Domain:
    """Draw a random appearance (used by ``domain="randomised"`` and by scene generators).

    Deterministic in ``rng``'s state. The target colour is redrawn (after every other field, so
    a domain whose first target passes is unchanged) until its :func:`target_contrast` against
    the floor reaches :data:`MIN_TARGET_CONTRAST`.
    """

    def rgb() -> tuple[float, float, float]:
        return tuple(float(c) for c in rng.uniform(0.1, 0.95, 3))

    light = rng.normal(0.0, 0.5, 3)
    light[2] = -abs(light[2]) - 0.7
    floor, texture = rgb(), str(rng.choice(TEXTURES))
    wall, body, accent, target = rgb(), rgb(), rgb(), rgb()
    light_direction = tuple(float(v) for v in light)
    light_intensity, ambient = float(rng.uniform(0.5, 1.1)), float(rng.uniform(0.15, 0.4))
    for _ in range(_MAX_TARGET_DRAWS):
        if target_contrast(target, floor, texture) >= MIN_TARGET_CONTRAST:
            break
        target = rgb()
    else:  # pragma: no cover - every floor colour in the drawn range has far colours
        raise RuntimeError(f"no target colour with contrast >= {MIN_TARGET_CONTRAST} against floor {floor}")
    return Domain(
        floor_rgb=floor,
        floor_texture=texture,
        wall_rgb=wall,
        body_rgb=body,
        accent_rgb=accent,
        target_rgb=target,
        light_direction=light_direction,
        light_intensity=light_intensity,
        ambient=ambient,
        pixel_noise_std=0.0,
    )


def resolve_domain(domain: str | Domain) -> Domain | None:
    """A :class:`Domain` for a preset name or instance; ``None`` for ``"randomised"``."""
    if isinstance(domain, Domain):
        return domain
    if domain == "randomised":
        return None
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; valid values: {', '.join(map(repr, DOMAIN_CHOICES))}")
    return DOMAINS[domain]


def episode_appearance(domain: Domain, rng: np.random.Generator) -> tuple[Domain, float]:
    """The appearance of one episode of ``domain`` and its field-of-view offset (degrees).

    A domain without ``distractor_colours`` or ``fovy_jitter_deg`` is returned unchanged with
    offset 0 (and ``rng`` is not used). Distractor colours redraw floor, wall and accent colours
    uniformly in [0.1, 0.95] per channel, redrawing the floor until the target's
    :func:`target_contrast` against it is >= :data:`MIN_TARGET_CONTRAST`. Deterministic in ``rng``.
    """
    offset = 0.0
    if domain.fovy_jitter_deg > 0:
        offset = float(rng.uniform(-domain.fovy_jitter_deg, domain.fovy_jitter_deg))
    if not domain.distractor_colours:
        return domain, offset

    def rgb() -> tuple[float, float, float]:
        return tuple(float(c) for c in rng.uniform(0.1, 0.95, 3))

    wall, accent = rgb(), rgb()
    for _ in range(_MAX_TARGET_DRAWS):
        floor = rgb()
        if target_contrast(domain.target_rgb, floor, domain.floor_texture) >= MIN_TARGET_CONTRAST:
            break
    else:  # pragma: no cover - most floors are far from any given target colour
        raise RuntimeError(f"no floor colour with contrast >= {MIN_TARGET_CONTRAST} to target {domain.target_rgb}")
    return replace(domain, floor_rgb=floor, wall_rgb=wall, accent_rgb=accent), offset


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur a uint8 image ``[H, W, 3]`` with a Gaussian of std ``sigma`` pixels (a no-op at 0).

    Separable convolution with edge padding, written with numpy because ``envs`` keeps its
    dependencies to numpy, Gymnasium and MuJoCo (a 32-64 px frame takes microseconds).
    """
    if sigma <= 0:
        return image
    radius = max(1, int(np.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    out = image.astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        out = sum(k * np.take(padded, np.arange(i, i + n), axis=axis) for i, k in enumerate(kernel))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def camera_effects(image: np.ndarray, domain: Domain, rng: np.random.Generator) -> np.ndarray:
    """What the domain's camera does to a clean rendered image: blur, then additive noise."""
    return add_camera_noise(gaussian_blur(image, domain.blur_sigma), domain.pixel_noise_std, rng)


def add_camera_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian pixel noise (std in 0..255 units) to a uint8 image; a no-op at std 0."""
    if std <= 0:
        return image
    noisy = image.astype(np.float32) + rng.normal(0.0, std, image.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def light_xml(domain: Domain) -> str:
    """MJCF ``<light>`` element and ``<visual>`` headlight settings for a domain."""
    d = np.asarray(domain.light_direction, dtype=np.float64)
    d = d / max(np.linalg.norm(d), 1e-9)
    i = domain.light_intensity
    return (
        f'<light directional="true" castshadow="false" pos="0 0 5" dir="{d[0]:.4f} {d[1]:.4f} {d[2]:.4f}" '
        f'diffuse="{i:.3f} {i:.3f} {i:.3f}" specular="0.1 0.1 0.1"/>'
    )


def headlight_xml(domain: Domain) -> str:
    """MJCF ``<visual>`` block setting the ambient level of the headlight."""
    a = domain.ambient
    return f'<visual><headlight ambient="{a:.3f} {a:.3f} {a:.3f}" diffuse="0.25 0.25 0.25" specular="0 0 0"/></visual>'


def floor_texture_xml(domain: Domain, name: str = "floortex") -> str:
    """MJCF ``<texture>`` + ``<material>`` for the floor of a domain (material named ``name``)."""
    r, g, b = domain.floor_rgb
    r2, g2, b2 = (min(1.0, c * 0.75 + 0.05) for c in domain.floor_rgb)
    if domain.floor_texture == "none":
        return f'<material name="{name}" rgba="{r:.3f} {g:.3f} {b:.3f} 1"/>'
    builtin = "checker" if domain.floor_texture == "checker" else "flat"
    mark = f' mark="edge" markrgb="{r2:.3f} {g2:.3f} {b2:.3f}"' if builtin == "flat" else ""
    return (
        f'<texture name="{name}_t" type="2d" builtin="{builtin}" width="64" height="64" '
        f'rgb1="{r:.3f} {g:.3f} {b:.3f}" rgb2="{r2:.3f} {g2:.3f} {b2:.3f}"{mark}/>'
        f'<material name="{name}" texture="{name}_t" texrepeat="4 4" texuniform="true"/>'
    )


__all__ = [
    "Domain",
    "DOMAINS",
    "DOMAIN_CHOICES",
    "TEXTURES",
    "random_domain",
    "episode_appearance",
    "gaussian_blur",
    "camera_effects",
    "MIN_TARGET_CONTRAST",
    "DIM_LIGHT",
    "srgb_to_lab",
    "floor_tones",
    "target_contrast",
    "resolve_domain",
    "replace",
    "add_camera_noise",
    "light_xml",
    "headlight_xml",
    "floor_texture_xml",
]
