"""Rendering for the ultrasound phantom: polar echo model, speckle, scan conversion, text.

The image is formed the way a curved-array scanner forms it. Echo strength is
modelled on a polar grid (``n_r`` depths x ``n_theta`` beam angles, rows are
radii from the virtual apex above the image, columns are beam angles), so
acoustic shadows are simply "everything deeper than a bone surface along the
same column". The polar image gets speckle, depth attenuation and log
compression, and is then scan-converted to the ``(H, W)`` Cartesian frame with
bilinear interpolation; pixels outside the fan stay 0.

Pixel ``(row, col)`` covers ``[col, col+1) x [row, row+1)`` (the convention of
:mod:`spinekit.geometry`), so polygon vertices computed from polar coordinates
line up with the rendered pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage, special

REFERENCE_WIDTH = 960
REFERENCE_HEIGHT = 720


def size_factor(width: int, height: int) -> float:
    """Scale of a ``width x height`` frame relative to the 960x720 reference."""
    return min(width / REFERENCE_WIDTH, height / REFERENCE_HEIGHT)


def header_height(width: int, height: int) -> int:
    """Height in pixels of the top header band that carries the burned-in patient text."""
    return max(14, round(44 * size_factor(width, height)))


def text_scale(width: int, height: int) -> int:
    """Integer up-scaling of Pillow's 11-pixel default bitmap font."""
    return max(1, round(2 * size_factor(width, height)))


SIDE_TEXT_CHARS = 5
"""Longest burned-in text on the left side (characters)."""


def side_margin(width: int, height: int) -> int:
    """Pixels kept free of the fan on each side for the depth scale and side text."""
    text_px = SIDE_TEXT_CHARS * 6 * text_scale(width, height) + 10
    return max(round(0.1 * width), text_px)


@dataclass(frozen=True)
class SectorGeometry:
    """Curved-array fan in image pixels.

    The apex ``(apex_x, apex_y)`` lies above the image (``apex_y < 0``); the
    fan spans beam angles ``[-theta_max, theta_max]`` (radians, 0 = straight
    down, positive towards +x) and radii ``[r_top, r_bot]`` (pixels; ``r_top``
    is the probe face, i.e. the skin). ``px_per_mm`` converts millimetres.
    """

    width: int
    height: int
    apex_x: float
    apex_y: float
    r_top: float
    r_bot: float
    theta_max: float
    px_per_mm: float
    n_r: int
    n_theta: int

    @property
    def y_top(self) -> float:
        """Image row of the probe face on the central beam."""
        return self.apex_y + self.r_top

    @property
    def dr(self) -> float:
        """Radial grid spacing (pixels)."""
        return (self.r_bot - self.r_top) / (self.n_r - 1)

    @property
    def dtheta(self) -> float:
        """Angular grid spacing (radians)."""
        return 2.0 * self.theta_max / (self.n_theta - 1)

    def grid_r(self) -> np.ndarray:
        """``(n_r,)`` float64 radii of the grid rows."""
        return np.linspace(self.r_top, self.r_bot, self.n_r)

    def grid_theta(self) -> np.ndarray:
        """``(n_theta,)`` float64 beam angles of the grid columns."""
        return np.linspace(-self.theta_max, self.theta_max, self.n_theta)

    def to_xy(self, theta: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Polar ``(theta, r)`` -> image ``(x, y)`` (same shapes, float64)."""
        return self.apex_x + r * np.sin(theta), self.apex_y + r * np.cos(theta)

    def to_polar(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image ``(x, y)`` -> polar ``(theta, r)`` (same shapes, float64)."""
        dx, dy = x - self.apex_x, y - self.apex_y
        return np.arctan2(dx, dy), np.hypot(dx, dy)


def make_geometry(
    width: int, height: int, *, depth_mm: float, probe_radius_mm: float, theta_max_deg: float
) -> SectorGeometry:
    """Fit a fan of the given imaging depth, probe radius and half-angle into the frame.

    The scale (pixels per mm) is the largest one for which the whole fan (its
    top corners rise above the probe face's centre) fits below the header band
    and between the side margins, as a scanner display does.
    """
    k = size_factor(width, height)
    fan_top = header_height(width, height) + round(12 * k)
    y_bot = height - round(10 * k)
    half_w = width / 2 - side_margin(width, height)
    theta = math.radians(theta_max_deg)
    rise_mm = probe_radius_mm * (1.0 - math.cos(theta))
    scale = min(
        (y_bot - fan_top) / (depth_mm + rise_mm),
        half_w / ((probe_radius_mm + depth_mm) * math.sin(theta)),
    )
    y_top = fan_top + rise_mm * scale
    r_top = probe_radius_mm * scale
    r_bot = (probe_radius_mm + depth_mm) * scale
    n_r = max(32, round((r_bot - r_top) / 1.4))
    n_theta = max(32, round(2 * theta * r_bot / 2.2))
    return SectorGeometry(
        width=width,
        height=height,
        apex_x=width / 2,
        apex_y=y_top - r_top,
        r_top=r_top,
        r_bot=r_bot,
        theta_max=theta,
        px_per_mm=scale,
        n_r=n_r,
        n_theta=n_theta,
    )


def column_surface(theta_pts: np.ndarray, r_pts: np.ndarray, grid_theta: np.ndarray) -> np.ndarray:
    """Radius where a polyline ``(theta_pts, r_pts)`` first crosses each beam.

    Returns ``(n_theta,)`` float64: the smallest radius of the polyline on each
    grid column (linear interpolation along segments), ``inf`` where the
    polyline does not reach that column. Works for curves that fold back in
    angle (the nearest part is what the beam hits first).
    """
    t1, t2 = theta_pts[:-1, None], theta_pts[1:, None]
    r1, r2 = r_pts[:-1, None], r_pts[1:, None]
    lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
    out = np.full(grid_theta.shape, np.inf)
    j0 = int(np.searchsorted(grid_theta, lo.min()))
    j1 = int(np.searchsorted(grid_theta, hi.max(), side="right"))
    if j1 <= j0:
        return out
    g = grid_theta[None, j0:j1]
    span = np.where(t2 == t1, 1.0, t2 - t1)
    r = r1 + (g - t1) / span * (r2 - r1)
    r = np.where((g >= lo) & (g <= hi), r, np.inf)
    out[j0:j1] = r.min(axis=0)
    return out


def soft_step(x: np.ndarray) -> np.ndarray:
    """Logistic step (same float dtype as ``x``), 0 for ``x << 0`` and 1 for ``x >> 0``."""
    return np.asarray(special.expit(x))


def correlated_noise(
    rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]
) -> np.ndarray:
    """Gaussian white noise smoothed by ``sigma`` (cells) and rescaled to unit std (float32)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    field = ndimage.gaussian_filter(white, sigma, mode="reflect", truncate=3.0)
    std = float(field.std())
    return np.clip(field / std, -5.0, 5.0) if std > 1e-6 else np.zeros(shape, dtype=np.float32)


def smooth_profile(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """``(n,)`` float64 smooth random curve with unit std (for wiggly layer boundaries)."""
    return correlated_noise(rng, (1, n), (0.0, sigma))[0].astype(np.float64)


def low_frequency_field(rng: np.random.Generator, shape: tuple[int, int], cells: int = 6) -> np.ndarray:
    """Slowly varying ``shape`` float64 field (std about 1): a coarse random grid, smoothly interpolated."""
    coarse = rng.standard_normal((cells, cells))
    rows, cols = _smooth_basis(shape[0], cells), _smooth_basis(shape[1], cells)
    across = (coarse[:, :, None] * cols.T[None, :, :]).sum(axis=1)  # (cells, n_cols), no BLAS
    field = np.zeros(shape)
    for k in range(cells):
        field += rows[:, k : k + 1] * across[k][None, :]
    return field


def _smooth_basis(n: int, cells: int) -> np.ndarray:
    """``(n, cells)`` Gaussian interpolation weights (rows sum to 1)."""
    pos = (np.arange(n) + 0.5) / n * cells - 0.5
    weights = np.exp(-0.5 * ((pos[:, None] - np.arange(cells)[None, :]) / 0.8) ** 2)
    return weights / weights.sum(axis=1, keepdims=True) * 1.6


def speckle_amplitude(
    rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]
) -> np.ndarray:
    """Rayleigh-distributed amplitude (float32, mean power 1) of smoothed complex noise."""
    re = ndimage.gaussian_filter(
        rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap", truncate=3.0
    )
    im = ndimage.gaussian_filter(
        rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap", truncate=3.0
    )
    power = re * re + im * im
    return np.sqrt(power / max(float(power.mean()), 1e-12))


@lru_cache(maxsize=16)
def _scan_map(geom: SectorGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear scan-conversion table of the fan pixels.

    Returns the flat indices ``(M,)`` of the fan pixels in the ``(H, W)`` frame,
    the flat polar index ``(M,)`` of the top-left neighbour of each pixel
    centre, its fractional offsets ``(2, M)`` float32 (row, column) and the
    ``(H, W)`` bool fan mask.
    """
    y, x = np.mgrid[0 : geom.height, 0 : geom.width].astype(np.float64) + 0.5
    theta, r = geom.to_polar(x, y)
    rows = (r - geom.r_top) / geom.dr
    cols = (theta + geom.theta_max) / geom.dtheta
    inside = (rows >= 0) & (rows <= geom.n_r - 1) & (cols >= 0) & (cols <= geom.n_theta - 1)
    pixels = np.flatnonzero(inside)
    rows, cols = rows.ravel()[pixels], cols.ravel()[pixels]
    r0 = np.minimum(np.floor(rows), geom.n_r - 2).astype(np.intp)
    c0 = np.minimum(np.floor(cols), geom.n_theta - 2).astype(np.intp)
    frac = np.stack([rows - r0, cols - c0]).astype(np.float32)
    return pixels, r0 * geom.n_theta + c0, frac, inside


def scan_convert(polar: np.ndarray, geom: SectorGeometry) -> np.ndarray:
    """``(n_r, n_theta)`` float image (0..255) -> ``(H, W)`` uint8 frame, 0 outside the fan."""
    pixels, base, frac, _ = _scan_map(geom)
    flat = polar.astype(np.float32).ravel()
    fr, fc = frac[0], frac[1]
    top = flat[base] * (1 - fc) + flat[base + 1] * fc
    low = flat[base + geom.n_theta] * (1 - fc) + flat[base + geom.n_theta + 1] * fc
    values = top * (1 - fr) + low * fr
    out = np.zeros(geom.height * geom.width, dtype=np.uint8)
    out[pixels] = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return out.reshape(geom.height, geom.width)


def fan_mask(geom: SectorGeometry) -> np.ndarray:
    """``(H, W)`` bool mask of the pixels inside the fan."""
    return _scan_map(geom)[3].copy()


def text_width(text: str, scale: int) -> int:
    """Width in pixels of ``text`` drawn by :func:`burn_text` at ``scale``."""
    return int(ImageFont.load_default_imagefont().getbbox(text)[2]) * scale


def burn_text(image: np.ndarray, text: str, x: int, y: int, scale: int, level: int = 235) -> None:
    """Draw ``text`` into ``image`` (``(H, W)`` uint8, in place) with Pillow's default font.

    The 11-pixel bitmap font is rendered, enlarged ``scale`` times (nearest
    neighbour) and combined with a maximum, so text over black stays readable.
    Parts beyond the image border are cut off.
    """
    font = ImageFont.load_default_imagefont()
    right, bottom = font.getbbox(text)[2:]
    canvas = Image.new("L", (max(1, right), max(1, bottom)), 0)
    ImageDraw.Draw(canvas).text((0, 0), text, fill=level, font=font)
    if scale > 1:
        canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.Resampling.NEAREST)
    glyphs = np.asarray(canvas, dtype=np.uint8)
    h = min(glyphs.shape[0], image.shape[0] - y)
    w = min(glyphs.shape[1], image.shape[1] - x)
    if h <= 0 or w <= 0:
        return
    region = image[y : y + h, x : x + w]
    np.maximum(region, glyphs[:h, :w], out=region)


def burn_depth_scale(image: np.ndarray, geom: SectorGeometry, level: int = 200) -> None:
    """Tick marks every centimetre and labels every 2 cm at the right edge (in place)."""
    scale = text_scale(geom.width, geom.height)
    x_tick = geom.width - side_margin(geom.width, geom.height) // 2 - 6 * scale
    tick_len = 4 * scale
    depth_mm = (geom.r_bot - geom.r_top) / geom.px_per_mm
    for cm in range(int(depth_mm // 10) + 1):
        y = round(geom.y_top + cm * 10 * geom.px_per_mm)
        if y >= geom.height - 1:
            break
        length = tick_len * 2 if cm % 2 == 0 else tick_len
        image[y : y + max(1, scale // 2 + 1), x_tick : x_tick + length] = level
        if cm % 2 == 0 and cm > 0:
            burn_text(image, str(cm), x_tick + length + 2, max(0, y - 5 * scale), scale, level)


def burn_overlays(image: np.ndarray, geom: SectorGeometry, header: str, frame: int) -> None:
    """Burn scanner overlays into ``image`` (``(H, W)`` uint8, in place), all outside the fan.

    ``header`` (patient name, ID, exam date) goes to the left of the header
    band, a study label to its right when there is room, scanner settings down
    the left side and the depth scale down the right side.
    """
    w, h = geom.width, geom.height
    scale = text_scale(w, h)
    top = max(1, (header_height(w, h) - 11 * scale) // 2)
    burn_text(image, header, 4 * scale, top, scale)
    right = f"L-SPINE C5-2 #{frame + 1}"
    x_right = w - text_width(right, scale) - 4 * scale
    if x_right > 4 * scale + text_width(header, scale) + 8 * scale:
        burn_text(image, right, x_right, top, scale)
    depth_cm = (geom.r_bot - geom.r_top) / geom.px_per_mm / 10
    lines = ["C5-2", f"{depth_cm:.1f}", f"G{50 + frame % 7}", "DR60", "MSK"]
    y = header_height(w, h) + 20 * scale
    x = max(2, (side_margin(w, h) - 30 * scale) // 4)
    for line in lines:
        burn_text(image, line, x, y, scale, level=190)
        y += 14 * scale
    burn_depth_scale(image, geom)
