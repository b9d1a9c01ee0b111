"""A plain folder of images without annotations (``--format images``).

Every image becomes an item with no shapes (a negative, or input for
prediction and pre-annotation). Multi-frame DICOM (ultrasound cine) gives one
item per frame, or only the chosen frame.
"""

from __future__ import annotations

from pathlib import Path

from spinekit.errors import InputError
from spinekit.io.images import is_dicom, is_image_file
from spinekit.io.shapes import ReadResult, SourceItem


def read_image_folder(src: str | Path, *, frames: str | int = "all") -> ReadResult:
    """Read every image under ``src`` (recursively); ``frames`` is "all" or a frame index."""
    root = Path(src)
    if root.is_file():
        files, base = [root], root.parent
    elif root.is_dir():
        files, base = sorted(p for p in root.rglob("*") if p.is_file()), root
    else:
        raise InputError(root, "source not found")
    result = ReadResult()
    for path in files:
        if path.name.startswith(".") or not is_image_file(path):
            continue
        rel = path.relative_to(base).as_posix()
        if not is_dicom(path):
            result.items.append(SourceItem(source=path, file_name=rel, shapes=[], image_path=path))
            continue
        from spinekit.io.dicom import dicom_frame_count

        try:
            count = dicom_frame_count(path)
        except InputError as exc:
            result.skipped.append(str(exc))
            continue
        chosen = range(count) if frames == "all" else [int(frames)]
        for frame in chosen:
            if frame >= count:
                result.skipped.append(f"{path}: frame {frame} requested, file has {count}")
                continue
            result.items.append(
                SourceItem(source=path, file_name=rel, shapes=[], image_path=path, frame=frame)
            )
    if not result.items and not result.skipped:
        raise InputError(root, "no images found")
    return result
