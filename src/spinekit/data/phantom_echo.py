"""Echo model of the ultrasound phantom: a scene of tissue layers, reflectors and blobs.

A :class:`Scene` is rendered on the polar grid of its :class:`SectorGeometry`
(rows = radius, columns = beam angle) by :func:`render_scene`, which returns
the 8-bit frame and the annotation polygons of the labelled reflectors.

Intensities are relative echo powers: muscle is about 1, fat about 0.3, bone
surfaces 10-40, acoustic shadow a few hundredths. A reflector (bone surface,
ligament, fascia fragment) is a curve in polar coordinates: the beam lights a
bright band of ``thickness_px`` starting at the curve, and everything deeper
on the same beam is multiplied by ``transmission`` (0.02 for bone: shadow).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from spinekit.data.phantom_render import (
    SectorGeometry,
    column_surface,
    correlated_noise,
    low_frequency_field,
    scan_convert,
    smooth_profile,
    soft_step,
    speckle_amplitude,
)

HARD_SHADOW = 0.3
"""Reflectors with a transmission below this cast a shadow that hides what is under them."""


@dataclass
class Reflector:
    """A specular surface on the polar grid.

    ``theta``/``r`` (float64, same length) trace the surface; ``envelope``
    (same length, or None for ``r``) is the surface the annotation follows
    (the facet joint's outline without its cleft); ``gain_along`` (same length,
    or None) scales the echo along the surface. ``label`` is the full-variant
    annotation label or None for unlabelled structures. The annotation polygon
    spans ``margin_above_px`` above the envelope to ``thickness_px +
    margin_below_px`` below it, over the beams where the surface is not in a
    shadow. ``target_theta`` (radians, or None): beam angle of an annotated target point
    (the facet joint's cleft); the point is placed on the polygon's probe-side edge.
    """

    name: str
    label: str | None
    theta: np.ndarray
    r: np.ndarray
    brightness: float
    thickness_px: float
    transmission: float
    envelope: np.ndarray | None = None
    margin_above_px: float = 0.0
    margin_below_px: float = 0.0
    min_width_px: float = 8.0
    gain_along: np.ndarray | None = None
    target_theta: float | None = None


TARGET_LABEL = "needle_target"
"""Label of the annotated target points :func:`render_scene` returns among its shapes."""


@dataclass
class Blob:
    """Elliptical echo (image pixels): added brightness, or a darkening factor when ``dark``."""

    x: float
    y: float
    semi_x: float
    semi_y: float
    angle: float
    brightness: float
    dark: bool = False


@dataclass
class Tissue:
    """Soft-tissue layers under the probe face (millimetres, relative echo powers)."""

    fat_mm: float
    fat_echo: float
    muscle_echo: float
    fascia_echo: float
    inner_fascia_mm: float
    inner_fascia_echo: float
    wiggle_mm: float = 1.5
    skin_mm: float = 1.2
    skin_echo: float = 10.0


@dataclass
class Imaging:
    """Scanner settings: gain and dynamic range (dB), depth fall-off, speckle share."""

    gain_db: float = 0.0
    dynamic_range_db: float = 50.0
    falloff_db_per_mm: float = 0.12
    speckle: float = 0.85
    noise_floor_db: float = -22.0
    background_variation: float = 0.35
    brightness: float = 1.0


@dataclass
class Scene:
    """Everything :func:`render_scene` draws for one frame."""

    geom: SectorGeometry
    tissue: Tissue
    imaging: Imaging
    reflectors: list[Reflector] = field(default_factory=list)
    blobs: list[Blob] = field(default_factory=list)


@dataclass
class _Grid:
    r: np.ndarray  # (n_r, 1) radii
    theta: np.ndarray  # (n_theta,) angles
    depth_mm: np.ndarray  # (n_r, 1) depth below the probe face
    x: np.ndarray  # (n_r, n_theta) image x of each cell
    y: np.ndarray  # (n_r, n_theta) image y of each cell


def _grid(geom: SectorGeometry) -> _Grid:
    r = geom.grid_r()[:, None]
    theta = geom.grid_theta()
    x, y = geom.to_xy(theta[None, :], r)
    depth = ((r - geom.r_top) / geom.px_per_mm).astype(np.float32)
    return _Grid(r=r, theta=theta, depth_mm=depth, x=x, y=y)


def _tissue_echo(scene: Scene, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """``(n_r, n_theta)`` float64 echo power of skin, fat, fascia and muscle."""
    t, s = scene.tissue, scene.geom.px_per_mm
    n_r, n_t = scene.geom.n_r, scene.geom.n_theta
    cells_mm = (scene.geom.dr / s, float(scene.geom.r_bot * scene.geom.dtheta / s))
    d = grid.depth_mm
    fat_edge = t.fat_mm + t.wiggle_mm * smooth_profile(rng, n_t, n_t / 8)[None, :]
    inner = t.inner_fascia_mm + 1.5 * t.wiggle_mm * smooth_profile(rng, n_t, n_t / 6)[None, :]
    septa = correlated_noise(rng, (n_r, n_t), (0.25 / cells_mm[0], 3.0 / cells_mm[1]))
    grain = correlated_noise(rng, (n_r, n_t), (0.5 / cells_mm[0], 0.8 / cells_mm[1]))
    fat = t.fat_echo * (np.exp(0.3 * grain) + 4.0 * soft_step(4.0 * (septa - 1.6)))
    muscle = t.muscle_echo * np.exp(0.35 * grain) * (1.0 + 3.0 * soft_step(5.0 * (grain - 1.9)))
    in_fat = soft_step((fat_edge - d) / 0.4)
    echo = fat * in_fat + muscle * (1.0 - in_fat)
    echo += t.skin_echo * soft_step((t.skin_mm - d) / 0.3)
    echo += t.fascia_echo * np.exp(-0.5 * ((d - fat_edge) / 0.45) ** 2)
    partial = soft_step(3.0 * smooth_profile(rng, n_t, n_t / 10))[None, :]
    echo += t.inner_fascia_echo * partial * np.exp(-0.5 * ((d - inner) / 0.4) ** 2)
    return echo


def _add_blobs(echo: np.ndarray, blobs: list[Blob], grid: _Grid, geom: SectorGeometry) -> None:
    """Add bright blobs / apply dark regions to ``echo`` in place (on a window around each)."""
    for blob in blobs:
        theta, r = geom.to_polar(np.array(blob.x), np.array(blob.y))
        reach = 3.0 * max(blob.semi_x, blob.semi_y)
        i0, i1 = np.searchsorted(grid.r[:, 0], [float(r) - reach, float(r) + reach])
        span = reach / max(float(r), 1.0)
        j0, j1 = np.searchsorted(grid.theta, [float(theta) - span, float(theta) + span])
        if i1 <= i0 or j1 <= j0:
            continue
        dx, dy = grid.x[i0:i1, j0:j1] - blob.x, grid.y[i0:i1, j0:j1] - blob.y
        c, s = np.cos(blob.angle), np.sin(blob.angle)
        u = (c * dx + s * dy) / blob.semi_x
        v = (-s * dx + c * dy) / blob.semi_y
        q = u * u + v * v
        if blob.dark:
            echo[i0:i1, j0:j1] *= 1.0 - (1.0 - blob.brightness) * soft_step(6.0 * (1.0 - q))
        else:
            echo[i0:i1, j0:j1] += blob.brightness * np.exp(-1.5 * q)


def _surfaces(scene: Scene, grid: _Grid) -> list[np.ndarray]:
    """Per reflector, the ``(n_theta,)`` radius where each beam meets it (inf: never)."""
    return [column_surface(ref.theta, ref.r, grid.theta) for ref in scene.reflectors]


def _add_reflectors(
    echo: np.ndarray, scene: Scene, grid: _Grid, surfaces: list[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Add bright bands to ``echo`` in place; return total and hard-shadow transmission maps.

    Work is limited to the block of columns a reflector covers and to the rows
    near it; deeper rows get the reflector's full transmission.
    """
    s = scene.geom.px_per_mm
    trans = np.ones_like(echo)
    hard = np.ones_like(echo)
    edge, ramp = 0.12 * s, 0.5 * s
    radii = grid.r[:, 0]
    for ref, surf in zip(scene.reflectors, surfaces, strict=True):
        finite = np.isfinite(surf)
        cols = np.flatnonzero(finite)
        if cols.size == 0:
            continue
        j0, j1 = int(cols[0]), int(cols[-1]) + 1
        rc = surf[None, j0:j1]
        lo, hi = float(surf[cols].min()), float(surf[cols].max()) + ref.thickness_px
        i0, i1, i2 = np.searchsorted(radii, [lo - 6 * edge, hi + 6 * edge, hi + 8 * ramp])
        r = grid.r[i0:i2]
        mod = np.exp(0.25 * smooth_profile(rng, j1 - j0, 3.0))
        if ref.gain_along is not None:
            mod = mod * np.interp(grid.theta[j0:j1], ref.theta, ref.gain_along)
        band = soft_step((r[: i1 - i0] - rc) / edge) * soft_step(
            (rc + ref.thickness_px - r[: i1 - i0]) / edge
        )
        echo[i0:i1, j0:j1] += (ref.brightness * mod)[None, :] * band
        factor = 1.0 - (1.0 - ref.transmission) * soft_step((r - rc - ref.thickness_px) / ramp)
        deep = np.where(finite[j0:j1], ref.transmission, 1.0)[None, :]
        maps = (trans, hard) if ref.transmission < HARD_SHADOW else (trans,)
        for target in maps:
            target[i0:i2, j0:j1] *= factor
            target[i2:, j0:j1] *= deep
    return trans, hard


def _compress(amplitude: np.ndarray, scene: Scene, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """Amplitude -> display grey level 0..255 (float64): fall-off, TGC wobble, log compression."""
    im = scene.imaging
    n_r = amplitude.shape[0]
    tgc = 2.0 * smooth_profile(rng, n_r, n_r / 5)[:, None]
    db = 20.0 * np.log10(np.maximum(amplitude, 1e-6))
    db += im.gain_db + tgc - im.falloff_db_per_mm * grid.depth_mm
    floor = -0.33 * im.dynamic_range_db
    level = np.clip((db - floor) / im.dynamic_range_db, 0.0, 1.0)
    return 255.0 * np.clip(level * im.brightness, 0.0, 1.0)


def render_scene(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Render ``scene``: ``(H, W)`` uint8 frame and ``[(label, (N, 2) polygon), ...]``.

    Polygons (float64 image ``(x, y)``) are given for labelled reflectors, one
    per run of beams on which the reflector is visible (not in a hard shadow).
    A reflector with a ``target_theta`` inside a visible run adds, right after that
    run's polygon, a ``(TARGET_LABEL, (1, 2) point)`` entry: the point of the polygon's
    probe-side edge on the target's beam.
    """
    geom = scene.geom
    grid = _grid(geom)
    s = geom.px_per_mm
    echo = _tissue_echo(scene, grid, rng)
    _add_blobs(echo, scene.blobs, grid, geom)
    echo *= np.exp(scene.imaging.background_variation * low_frequency_field(rng, echo.shape))
    surfaces = _surfaces(scene, grid)
    trans, hard = _add_reflectors(echo, scene, grid, surfaces, rng)
    beam = (0.12 * s / geom.dr, 0.35 * s / (0.6 * geom.r_bot * geom.dtheta))
    power = ndimage.gaussian_filter((echo * trans).astype(np.float32), beam, mode="nearest", truncate=3.0)
    power = np.maximum(power, 0.0)
    speckle_sigma = (0.12 * s / geom.dr, 0.3 * s / (0.6 * geom.r_bot * geom.dtheta))
    sp = speckle_amplitude(rng, power.shape, speckle_sigma)
    k = scene.imaging.speckle
    noise = 10.0 ** (scene.imaging.noise_floor_db / 20.0) * np.roll(
        sp, (sp.shape[0] // 2, sp.shape[1] // 3), (0, 1)
    )
    amplitude = np.sqrt(power) * (1.0 - k + k * sp) + noise
    frame = scan_convert(_compress(amplitude, scene, grid, rng), geom)
    shapes = _annotations(scene, grid, surfaces, hard)
    return frame, shapes


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` index runs of True values in a 1-D bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    diff = np.diff(padded)
    starts, ends = np.flatnonzero(diff == 1), np.flatnonzero(diff == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _annotations(
    scene: Scene, grid: _Grid, surfaces: list[np.ndarray], hard: np.ndarray
) -> list[tuple[str, np.ndarray]]:
    geom = scene.geom
    out: list[tuple[str, np.ndarray]] = []
    for ref, surf in zip(scene.reflectors, surfaces, strict=True):
        if ref.label is None:
            continue
        finite = np.isfinite(surf)
        rows = np.clip(np.rint((np.where(finite, surf, geom.r_top) - geom.r_top) / geom.dr), 0, geom.n_r - 1)
        lit = hard[rows.astype(np.intp), np.arange(geom.n_theta)] > 0.5
        env_pts = ref.r if ref.envelope is None else ref.envelope
        env = column_surface(ref.theta, env_pts, grid.theta)
        visible = finite & lit & np.isfinite(env)
        for j0, j1 in _runs(visible):
            poly, target = _band_polygon(ref, env[j0 : j1 + 1], grid.theta[j0 : j1 + 1], geom)
            width = float(np.ptp(poly[:, 0])) if len(poly) else 0.0
            if width >= ref.min_width_px:
                out.append((ref.label, poly))
                if target is not None:
                    out.append((TARGET_LABEL, target))
    return out


def _band_polygon(
    ref: Reflector, env: np.ndarray, theta: np.ndarray, geom: SectorGeometry
) -> tuple[np.ndarray, np.ndarray | None]:
    """Closed band around ``env`` over ``theta`` (polar) as an ``(N, 2)`` image polygon, and
    the ``(1, 2)`` point of its probe-side edge on ``ref.target_theta`` (None when the
    target beam is not inside this band)."""
    half = geom.dtheta / 2
    count = int(np.clip(theta.size // 3, 6, 36))
    t = np.linspace(theta[0] - half, theta[-1] + half, count)
    e = np.interp(t, theta, env)
    u = np.linspace(-1.0, 1.0, count)
    taper = 0.5 + 0.5 * np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))
    top = e - ref.margin_above_px * taper
    bottom = e + ref.thickness_px + ref.margin_below_px * taper
    r = np.concatenate([top, bottom[::-1]])
    th = np.concatenate([t, t[::-1]])
    r = np.clip(r, geom.r_top, geom.r_bot)
    th = np.clip(th, -geom.theta_max, geom.theta_max)
    x, y = geom.to_xy(th, r)
    x = np.clip(x, 0.0, float(geom.width))
    y = np.clip(y, 0.0, float(geom.height))
    target = _edge_point(ref.target_theta, t, np.clip(top, geom.r_top, geom.r_bot), geom)
    return np.stack([x, y], axis=1), target


def _edge_point(
    target: float | None, t: np.ndarray, top: np.ndarray, geom: SectorGeometry
) -> np.ndarray | None:
    """``(1, 2)`` image point of the polyline ``(t, top)`` (polar) at beam ``target``, the
    point on the straight polygon edge between the two vertices around it; None outside."""
    if target is None or not t[0] <= target <= t[-1] or abs(target) > geom.theta_max:
        return None
    k = int(np.clip(np.searchsorted(t, target) - 1, 0, len(t) - 2))
    x, y = geom.to_xy(t[k : k + 2], top[k : k + 2])
    # the edge between vertices k and k+1 crosses the target beam (a ray from the apex)
    d = np.array([x[1] - x[0], y[1] - y[0]])
    ray = np.array([np.sin(target), np.cos(target)])
    rel = np.array([x[0] - geom.apex_x, y[0] - geom.apex_y])
    den = d[0] * ray[1] - d[1] * ray[0]
    s = 0.0 if abs(den) < 1e-12 else float(np.clip((rel[1] * ray[0] - rel[0] * ray[1]) / den, 0.0, 1.0))
    return np.array([[x[0] + s * d[0], y[0] + s * d[1]]])
