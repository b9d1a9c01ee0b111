"""Transverse lumbar views of the ultrasound phantom as :class:`Scene` objects.

Views (one per frame):

- ``interlaminar`` (positive): laminae sloping down from the midline window to
  the facet joints (two humps - inferior and superior articular process - with
  a dark joint cleft between them), transverse processes further out and
  deeper, the posterior complex (thin line) at the top of the interlaminar
  window, the dark thecal sac and, deep in the window, the ventral
  (anterior) complex as a bright band. Bone casts shadows.
- ``spinous`` (negative): spinous process tip in the midline over laminae and
  smooth articular pillars; the midline shadow hides the canal, no facet cleft.
- ``lateral`` (negative): the spinous view slid sideways (probe off-midline).
- ``soft`` (negative): soft tissue only (probe between levels, no bone in view).
"""

from __future__ import annotations

import math

import numpy as np

from spinekit.data.phantom_anatomy import (
    Builder,
    Patient,
    Placement,
    Side,
    facet_curve,
    lamina_curve,
    mirror,
    transverse_process_curve,
)
from spinekit.data.phantom_echo import Imaging, Scene, Tissue
from spinekit.data.phantom_render import SectorGeometry

NEGATIVE_VIEWS = ("spinous", "lateral", "soft")
NEGATIVE_VIEW_WEIGHTS = (0.5, 0.35, 0.15)


def _sides(patient: Patient, rng: np.random.Generator) -> list[Side]:
    """Left and right facet positions of one frame (asymmetric: rotation, scoliosis)."""
    depth = patient.facet_depth_mm + rng.normal(0.0, 1.0)
    return [
        Side(
            sign=sign,
            facet_depth=depth + rng.normal(0.0, 1.2),
            facet_lateral=patient.facet_lateral_mm + rng.normal(0.0, 0.8),
            facet_length=patient.facet_length_mm * rng.uniform(0.85, 1.15),
        )
        for sign in (-1.0, 1.0)
    ]


def _interlaminar(b: Builder, sides: list[Side]) -> None:
    """Positive view: facets, laminae, TPs, posterior complex, thecal sac, ventral complex."""
    p, rng = b.patient, b.rng
    window = p.window_half_mm * rng.uniform(0.85, 1.15)
    mean_depth = float(np.mean([side.facet_depth for side in sides]))
    lamina_top = mean_depth - p.lamina_rise_mm * rng.uniform(0.85, 1.15)
    for side in sides:
        u, env, surf, gain, cleft_u = facet_curve(side, rng)
        b.bone(
            "facet",
            "F",
            mirror(u, side.sign),
            surf,
            (0.8, 1.25),
            (1.2, 2.0),
            envelope_v=env,
            gain_along=gain,
            target_u=cleft_u * side.sign,
        )
        tip = lamina_top + rng.normal(0.0, 0.6) + 0.3 * (side.facet_depth - mean_depth)
        lu, lv = lamina_curve(window * rng.uniform(0.9, 1.1), tip, float(u[0]), float(surf[0]), rng)
        b.bone("lamina", "SP", mirror(lu, side.sign), lv, (0.55, 1.0))
        tu, tv = transverse_process_curve(
            float(u[-1]) - rng.uniform(0.3, 2.5),
            side.facet_depth + p.tp_drop_mm * rng.uniform(0.8, 1.2),
            p.tp_length_mm * rng.uniform(0.85, 1.15),
            rng,
        )
        b.bone("transverse process", "TP", mirror(tu, side.sign), tv, (0.8, 1.3))
    _canal(b, window, lamina_top)


def _canal(b: Builder, window: float, lamina_top: float) -> None:
    """Interlaminar window contents: posterior complex, thecal sac, ventral complex, ligament."""
    p, rng = b.patient, b.rng
    pc_depth = lamina_top + rng.uniform(1.2, 2.8)
    u = np.linspace(-window - 1.5, window + 1.5, 30)
    b.surface(
        "posterior complex",
        None,
        u,
        pc_depth + rng.uniform(-0.8, 0.8) * (u / window) ** 2,
        brightness=p.bone_echo * rng.uniform(0.04, 0.12),
        thickness_mm=rng.uniform(0.6, 1.0),
        transmission=0.6,
    )
    e_depth = lamina_top + p.canal_mm * rng.uniform(0.9, 1.1)
    b.blob(0.0, (pc_depth + e_depth) / 2 + 0.5, (window + 7.0, (e_depth - pc_depth) / 2), 0.08, dark=True)
    half = window + rng.uniform(6.0, 10.0)
    u = np.linspace(-half, half, 50)
    v = e_depth + rng.uniform(-1.5, 2.0) * (u / half) ** 2 + math.tan(math.radians(rng.normal(0, 4))) * u
    b.surface(
        "ventral complex",
        "E",
        u,
        v,
        brightness=p.bone_echo * rng.uniform(0.3, 0.7),
        thickness_mm=rng.uniform(2.0, 3.8),
        transmission=0.001,
        margins_mm=(0.5, 0.5),
    )
    b.blob(
        0.0,
        (p.fat_mm + lamina_top) / 2,
        (1.2, (lamina_top - p.fat_mm) / 2),
        p.muscle_echo * rng.uniform(0.5, 1.5),
    )


def _spinous(b: Builder, sides: list[Side], lateral: bool) -> None:
    """Negative view: spinous process tip, laminae, smooth articular pillars, maybe TPs."""
    p, rng = b.patient, b.rng
    mean_depth = float(np.mean([side.facet_depth for side in sides]))
    tip = max(p.fat_mm + rng.uniform(2.0, 6.0), mean_depth - rng.uniform(16.0, 24.0))
    half = rng.uniform(3.0, 5.0)
    u = np.linspace(-half, half, 30)
    cap = tip + rng.uniform(1.0, 2.5) * (u / half) ** 2
    b.bone("spinous process", "SP", u, cap, (0.9, 1.3))
    for sign in (-1.0, 1.0):  # steep sides: no echo back to the probe, but they block the beam
        b.surface(
            "spinous process side",
            None,
            np.full(12, sign * half * 0.98),
            np.linspace(float(cap[-1]) + 0.5, tip + 16.0, 12),
            brightness=0.0,
            thickness_mm=0.5,
            transmission=0.001,
        )
    with_tp = lateral or rng.random() < 0.5
    for side in sides:
        start = side.facet_lateral - side.facet_length / 2
        lu, lv = lamina_curve(half - 0.5, tip + rng.uniform(9.0, 14.0), start, side.facet_depth, rng)
        b.bone("lamina", "SP", mirror(lu, side.sign), lv, (0.6, 1.05))
        pu = np.linspace(start, start + side.facet_length, 40)
        s = (pu - start) / side.facet_length
        pv = side.facet_depth - rng.uniform(0.5, 2.0) * 4 * s * (1 - s) + rng.uniform(-1.5, 1.5) * s
        b.bone("articular pillar", None, mirror(pu, side.sign), pv, (0.7, 1.2))
        if with_tp:
            tu, tv = transverse_process_curve(
                float(pu[-1]) - rng.uniform(0.3, 2.5),
                side.facet_depth + p.tp_drop_mm,
                p.tp_length_mm * rng.uniform(0.85, 1.15),
                rng,
            )
            b.bone("transverse process", "TP", mirror(tu, side.sign), tv, (0.8, 1.3))
    b.blob(0.0, (p.fat_mm + tip) / 2, (1.0, max(0.5, (tip - p.fat_mm) / 2)), p.muscle_echo)


def _distractors(b: Builder, amount: float) -> None:
    """Unlabelled bright blobs, dark vessels and short bright arcs (no shadow) in the muscle."""
    p, rng = b.patient, b.rng
    top, bottom = p.fat_mm + 2.0, max(p.fat_mm + 4.0, p.facet_depth_mm - 4.0)
    for _ in range(round(rng.uniform(2.0, 6.0) * amount)):
        b.blob(
            rng.uniform(-40.0, 40.0),
            rng.uniform(top, bottom),
            (rng.uniform(0.8, 3.5), rng.uniform(0.5, 2.0)),
            p.muscle_echo * rng.uniform(3.0, 30.0),
            angle=rng.uniform(0.0, math.pi),
        )
    for _ in range(round(rng.uniform(0.0, 2.0) * amount)):
        b.blob(
            rng.uniform(-35.0, 35.0),
            rng.uniform(top, bottom + 10.0),
            (rng.uniform(1.5, 4.0), rng.uniform(1.0, 3.0)),
            0.25,
            angle=rng.uniform(0.0, math.pi),
            dark=True,
        )
    for _ in range(round(rng.uniform(1.0, 3.0) * amount)):
        length = rng.uniform(4.0, 10.0)
        s = np.linspace(-0.5, 0.5, 20)
        u = rng.uniform(-30.0, 30.0) + length * s
        v = (
            rng.uniform(top + 1.0, bottom - 2.0)
            + rng.uniform(-3.0, 3.0) * s * s
            + rng.uniform(-0.4, 0.4) * length * s
        )
        b.surface(
            "fascia fragment",
            None,
            u,
            v,
            brightness=p.bone_echo * rng.uniform(0.05, 0.25),
            thickness_mm=rng.uniform(0.5, 1.0),
            transmission=rng.uniform(0.55, 0.85),
        )


def build_scene(
    patient: Patient,
    geom: SectorGeometry,
    view: str,
    rng: np.random.Generator,
    *,
    speckle: float,
    distractors: float,
    background_variation: float,
) -> Scene:
    """One frame's scene for ``view`` (see the module docstring for the views)."""
    sides = _sides(patient, rng)
    offset = rng.normal(0.0, 2.0)
    if view == "lateral":
        offset += float(rng.choice([-1.0, 1.0])) * rng.uniform(18.0, 28.0)
    tilt = math.radians(patient.tilt_deg + rng.normal(0.0, 1.5))
    place = Placement(geom=geom, tilt=tilt, pivot_mm=patient.facet_depth_mm, offset_mm=offset)
    builder = Builder(place=place, patient=patient, rng=rng, reflectors=[], blobs=[])
    if view == "interlaminar":
        _interlaminar(builder, sides)
    elif view in ("spinous", "lateral"):
        _spinous(builder, sides, lateral=view == "lateral")
    elif view != "soft":
        raise ValueError(f"unknown phantom view {view!r}")
    _distractors(builder, distractors)
    m = patient.muscle_echo
    tissue = Tissue(
        fat_mm=patient.fat_mm + rng.normal(0.0, 0.4),
        fat_echo=patient.fat_echo,
        muscle_echo=m,
        fascia_echo=m * rng.uniform(8.0, 25.0),
        inner_fascia_mm=patient.fat_mm + rng.uniform(0.3, 0.6) * (patient.facet_depth_mm - patient.fat_mm),
        inner_fascia_echo=m * rng.uniform(3.0, 10.0),
    )
    imaging = Imaging(
        gain_db=patient.gain_db + rng.normal(0.0, 1.0),
        dynamic_range_db=patient.dynamic_range_db,
        falloff_db_per_mm=patient.falloff_db_per_mm,
        speckle=speckle,
        background_variation=background_variation,
    )
    return Scene(
        geom=geom, tissue=tissue, imaging=imaging, reflectors=builder.reflectors, blobs=builder.blobs
    )
