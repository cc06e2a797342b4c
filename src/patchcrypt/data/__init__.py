"""Data: the :class:`ImageSet` every reader returns, the readers, manifests, bundled sample images."""

from .imageset import ImageSet
from .manifest import MANIFEST_FORMAT, MANIFEST_NAME, read_manifest
from .pack import read_pack, write_pack
from .readers import FASHION_CLASSES, list_images, load_dataset, load_image_folder
from .samples import digits_dataset, sample_photos

__all__ = ["ImageSet", "load_dataset", "load_image_folder", "list_images", "read_manifest", "MANIFEST_NAME",
           "MANIFEST_FORMAT", "read_pack", "write_pack", "sample_photos", "digits_dataset", "FASHION_CLASSES"]
