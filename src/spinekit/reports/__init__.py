"""Run reports: prediction vs expert overlays and the self-contained HTML report."""

from spinekit.reports.html import build_report
from spinekit.reports.overlay import draw_overlay, image_score, save_overlay

__all__ = ["build_report", "draw_overlay", "image_score", "save_overlay"]
