"""Anatomy building blocks of the ultrasound phantom (see :mod:`spinekit.data.phantom_views`).

Anatomy is laid out in millimetres in a body frame (``u`` lateral, + towards
the image right; ``v`` depth below the skin on the central beam), then tilted,
shifted and mapped onto the fan of the patient's :class:`SectorGeometry` by a
:class:`Placement`. :class:`Builder` turns body-frame curves into
:class:`~spinekit.data.phantom_echo.Reflector` objects and blobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spinekit.data.phantom_echo import Blob, Reflector
from spinekit.data.phantom_render import SectorGeometry, make_geometry


@dataclass(frozen=True)
class Patient:
    """Per-patient body and scanner parameters (millimetres unless stated)."""

    depth_mm: float
    probe_radius_mm: float
    theta_max_deg: float
    fat_mm: float
    facet_depth_mm: float
    facet_lateral_mm: float
    facet_length_mm: float
    window_half_mm: float
    lamina_rise_mm: float
    canal_mm: float
    tp_drop_mm: float
    tp_length_mm: float
    tilt_deg: float
    bone_echo: float
    muscle_echo: float
    fat_echo: float
    gain_db: float
    dynamic_range_db: float
    falloff_db_per_mm: float


def sample_patient(rng: np.random.Generator) -> Patient:
    """Draw one patient's body habitus and scanner settings."""
    fat = rng.uniform(4.0, 20.0)
    facet = fat + rng.uniform(24.0, 34.0)
    rise = rng.uniform(0.5, 3.0)
    canal = rng.uniform(13.0, 19.0)
    depth = float(np.clip(facet - rise + canal + rng.uniform(25.0, 40.0), 70.0, 120.0))
    return Patient(
        depth_mm=depth,
        probe_radius_mm=rng.uniform(40.0, 60.0),
        theta_max_deg=rng.uniform(20.0, 26.0),
        fat_mm=fat,
        facet_depth_mm=facet,
        facet_lateral_mm=rng.uniform(14.0, 20.0),
        facet_length_mm=rng.uniform(9.0, 14.0),
        window_half_mm=rng.uniform(4.0, 7.0),
        lamina_rise_mm=rise,
        canal_mm=canal,
        tp_drop_mm=rng.uniform(4.0, 11.0),
        tp_length_mm=rng.uniform(15.0, 26.0),
        tilt_deg=rng.normal(0.0, 3.0),
        bone_echo=rng.uniform(60.0, 200.0),
        muscle_echo=rng.uniform(0.7, 1.3),
        fat_echo=rng.uniform(0.12, 0.3),
        gain_db=rng.uniform(-3.0, 3.0),
        dynamic_range_db=rng.uniform(46.0, 58.0),
        falloff_db_per_mm=rng.uniform(0.05, 0.18),
    )


def patient_geometry(patient: Patient, width: int, height: int) -> SectorGeometry:
    """The fan of this patient's exam (depth setting, probe radius, sector angle)."""
    return make_geometry(
        width,
        height,
        depth_mm=patient.depth_mm,
        probe_radius_mm=patient.probe_radius_mm,
        theta_max_deg=patient.theta_max_deg,
    )


@dataclass(frozen=True)
class Placement:
    """Body frame (mm) -> polar grid: rotation ``tilt`` (rad) about depth ``pivot_mm``, shift."""

    geom: SectorGeometry
    tilt: float
    pivot_mm: float
    offset_mm: float

    def polar(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Body ``(u, v)`` mm arrays -> polar ``(theta, r)`` arrays."""
        c, s = math.cos(self.tilt), math.sin(self.tilt)
        uu = c * u - s * (v - self.pivot_mm) + self.offset_mm
        vv = self.pivot_mm + s * u + c * (v - self.pivot_mm)
        scale = self.geom.px_per_mm
        return self.geom.to_polar(self.geom.apex_x + scale * uu, self.geom.y_top + scale * vv)

    def xy(self, u: float, v: float) -> tuple[float, float]:
        """One body point (mm) -> image ``(x, y)`` pixels."""
        theta, r = self.polar(np.array([u]), np.array([v]))
        x, y = self.geom.to_xy(theta, r)
        return float(x[0]), float(y[0])


@dataclass
class Side:
    """One side's frame-level anatomy (right side coordinates, mirrored by ``sign``)."""

    sign: float
    facet_depth: float
    facet_lateral: float
    facet_length: float


def facet_curve(
    side: Side, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Facet joint: right-side ``u``, envelope ``v``, surface ``v`` with the cleft, echo gain,
    and the right-side ``u`` (mm) of the joint cleft (the needle target's position).

    The envelope (the outline the annotation follows) has two humps, the inferior and the
    superior articular process, 0.22 of the joint length either side of the cleft, and a
    step of up to 1.2 mm at the cleft (the two processes at different depths)."""
    length = side.facet_length
    t = np.linspace(-0.5, 0.5, 90)
    bowl = rng.uniform(-1.0, 3.0)
    slope = math.tan(math.radians(rng.uniform(-22.0, 18.0)))
    cleft = rng.uniform(-0.12, 0.12)
    h1, h2 = rng.uniform(0.3, 1.3), rng.uniform(0.3, 1.3)
    step = rng.uniform(-1.2, 1.2)
    env = side.facet_depth + bowl * t * t * length / 6 + slope * t * length
    env = env - h1 * np.exp(-(((t - cleft + 0.22) / 0.16) ** 2))
    env = env - h2 * np.exp(-(((t - cleft - 0.22) / 0.16) ** 2))
    env = env + step / (1.0 + np.exp(-(t - cleft) / 0.03))
    width = rng.uniform(0.5, 0.9) / length
    shape = np.exp(-(((t - cleft) / width) ** 2))
    u = side.facet_lateral + t * length
    surface = env + rng.uniform(1.0, 2.2) * shape
    return u, env, surface, 1.0 - rng.uniform(0.6, 0.9) * shape, side.facet_lateral + cleft * length


def lamina_curve(
    u0: float, v0: float, u1: float, v1: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Lamina from its medial tip ``(u0, v0)`` to ``(u1, v1)`` (mm), gently curved."""
    s = np.linspace(0.0, 1.0, 40)
    bulge = rng.uniform(-1.5, 1.0)
    return u0 + (u1 - u0) * s, v0 + (v1 - v0) * s ** rng.uniform(0.8, 1.3) + bulge * 4 * s * (1 - s)


def transverse_process_curve(
    u0: float, v0: float, length: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Transverse process from ``(u0, v0)`` laterally over ``length`` mm, slightly convex."""
    s = np.linspace(0.0, 1.0, 40)
    slope = math.tan(math.radians(rng.uniform(-12.0, 15.0)))
    arch = rng.uniform(0.0, 2.5)
    return u0 + length * s, v0 + slope * length * s - arch * 4 * s * (1 - s)


def mirror(u: np.ndarray, sign: float) -> np.ndarray:
    return u * sign


@dataclass
class Builder:
    """Collects the reflectors and blobs of one frame, in body millimetres."""

    place: Placement
    patient: Patient
    rng: np.random.Generator
    reflectors: list[Reflector]
    blobs: list[Blob]

    def mm(self, value: float) -> float:
        return value * self.place.geom.px_per_mm

    def surface(
        self,
        name: str,
        label: str | None,
        u: np.ndarray,
        v: np.ndarray,
        *,
        brightness: float,
        thickness_mm: float,
        transmission: float,
        margins_mm: tuple[float, float] = (0.8, 1.0),
        envelope_v: np.ndarray | None = None,
        gain_along: np.ndarray | None = None,
        target_u: float | None = None,
    ) -> None:
        """Add a reflector traced by body-frame points ``(u, v)`` (mm).

        ``target_u``: body ``u`` (mm) of an annotated target point on the reflector (the
        facet joint's cleft); its beam angle is kept so the annotation can place the point.
        """
        theta, r = self.place.polar(u, v)
        target_theta = None
        if target_u is not None:
            env = v if envelope_v is None else envelope_v
            order = np.argsort(u)
            v_target = float(np.interp(target_u, u[order], env[order]))
            target_theta = float(self.place.polar(np.array([target_u]), np.array([v_target]))[0][0])
        order = np.argsort(theta, kind="stable")
        envelope = None if envelope_v is None else self.place.polar(u, envelope_v)[1][order]
        self.reflectors.append(
            Reflector(
                name=name,
                label=label,
                theta=theta[order],
                r=r[order],
                brightness=brightness,
                gain_along=None if gain_along is None else gain_along[order],
                thickness_px=self.mm(thickness_mm),
                transmission=transmission,
                envelope=envelope,
                margin_above_px=self.mm(margins_mm[0]),
                margin_below_px=self.mm(margins_mm[1]),
                min_width_px=self.mm(2.5),
                target_theta=target_theta,
            )
        )

    def blob(
        self,
        u: float,
        v: float,
        semi_mm: tuple[float, float],
        brightness: float,
        angle: float = 0.0,
        dark: bool = False,
    ) -> None:
        x, y = self.place.xy(u, v)
        self.blobs.append(
            Blob(
                x=x,
                y=y,
                semi_x=self.mm(semi_mm[0]),
                semi_y=self.mm(semi_mm[1]),
                angle=angle + self.place.tilt,
                brightness=brightness,
                dark=dark,
            )
        )

    def bone(
        self,
        name: str,
        label: str | None,
        u: np.ndarray,
        v: np.ndarray,
        gain: tuple[float, float],
        margins_mm: tuple[float, float] = (0.8, 1.0),
        envelope_v: np.ndarray | None = None,
        gain_along: np.ndarray | None = None,
        target_u: float | None = None,
    ) -> None:
        """A bone surface: bright cortex line with an acoustic shadow."""
        self.surface(
            name,
            label,
            u,
            v,
            brightness=self.patient.bone_echo * self.rng.uniform(*gain),
            thickness_mm=self.rng.uniform(0.9, 1.5),
            transmission=self.rng.uniform(0.0005, 0.002),
            margins_mm=margins_mm,
            envelope_v=envelope_v,
            gain_along=gain_along,
            target_u=target_u,
        )
