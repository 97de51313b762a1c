"""Reading and writing of images, arrays and JSON: SimpleITK for NIfTI, every write atomic."""
from ldiff.io.atomic import atomic_path, load_json, save_json_atomic, save_npz_atomic
from ldiff.io.images import (
    array_to_image,
    Geometry,
    geometry_mismatch,
    read_image,
    write_image_atomic,
)

__all__ = [
    "Geometry",
    "array_to_image",
    "atomic_path",
    "geometry_mismatch",
    "load_json",
    "read_image",
    "save_json_atomic",
    "save_npz_atomic",
    "write_image_atomic",
]
