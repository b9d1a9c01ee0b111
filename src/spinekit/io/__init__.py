"""Reading and writing: images (raster and DICOM), annotation formats, atomic files."""
