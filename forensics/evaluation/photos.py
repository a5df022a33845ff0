"""Real camera photographs to build image evaluation sets from, as Debian packages ship them.

Desktop wallpaper packages ship photographs taken with real cameras; many keep
the camera's EXIF (make and model). Twenty-five of them are used, of very
different scenes (macro flowers and insects, grass, water, landscapes at dusk,
boats, architecture, a bird on a tree, an oil painting photographed):

- ``mate-backgrounds`` (``/usr/share/backgrounds/mate``): Sony DSC-RX100M4,
  Canon EOS 350D, Canon EOS Digital Rebel, Canon EOS 400D, Konica Minolta
  DiMAGE Z5, and eight macro/nature photographs without EXIF;
- ``plasma-workspace-wallpapers`` (``/usr/share/wallpapers``): Nokia N9,
  Olympus E-M1 (five photographs), Sony NEX-3N, Canon EOS 70D, and three
  photographs without EXIF;
- ``lomiri-wallpapers-20.04`` (``/usr/share/backgrounds``): one photograph
  without EXIF (a nuthatch on a tree trunk).

Caveat, true by construction: the packagers resized and re-saved most of
these (2560 x 1600 and similar), so the sensor noise is weaker and smoother
than in a file straight from a camera, and each is already a JPEG (its own
quantisation is in the pixels). They are still real optics, real sensor
noise and real scene content, which synthetic images are not.

``./scripts/test`` installs the packages with apt-get (``DEBIAN_PACKAGES``);
nothing is downloaded at run time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


class MissingSource(RuntimeError):
    pass


@dataclass(frozen=True)
class Photo:
    name: str
    package: str
    path: Path
    camera: str  # make and model from EXIF, or "" when the file has none


_MATE = Path("/usr/share/backgrounds/mate")
_PLASMA = Path("/usr/share/wallpapers")
_LOMIRI = Path("/usr/share/backgrounds")


def _plasma(name: str, camera: str = "") -> Photo:
    return Photo(
        name, "plasma-workspace-wallpapers", _PLASMA / name / "contents/images/2560x1600.jpg", camera
    )


def _mate(sub: str, camera: str = "") -> Photo:
    name = Path(sub).stem
    return Photo(name, "mate-backgrounds", _MATE / sub, camera)


#: Fixed order: indices are stable, so a set built from ``photo(i)`` is reproducible.
PHOTOS: tuple[Photo, ...] = (
    _mate("abstract/Elephants_3840x2160.jpg", "SONY DSC-RX100M4"),
    _mate("nature/Blinds.jpg", "Canon EOS 350D DIGITAL"),
    _mate("nature/Dune.jpg", "Canon EOS DIGITAL REBEL"),
    _mate("nature/Storm.jpg", "Canon EOS 400D DIGITAL"),
    _mate("nature/Wood.jpg", "KONICA MINOLTA DiMAGE Z5"),
    _plasma("BytheWater", "Nokia N9"),
    _plasma("ColdRipple", "OLYMPUS E-M1"),
    _plasma("DarkestHour", "OLYMPUS E-M1"),
    _plasma("Kite", "OLYMPUS E-M1"),
    _plasma("OneStandsOut", "OLYMPUS E-M1"),
    _plasma("Path", "OLYMPUS E-M1"),
    _plasma("ColorfulCups", "SONY NEX-3N"),
    _plasma("FallenLeaf", "Canon EOS 70D"),
    _mate("nature/Aqua.jpg"),
    _mate("nature/FreshFlower.jpg"),
    _mate("nature/Garden.jpg"),
    _mate("nature/GreenMeadow.jpg"),
    _mate("nature/LadyBird.jpg"),
    _mate("nature/RainDrops.jpg"),
    _mate("nature/TwoWings.jpg"),
    _mate("nature/YellowFlower.jpg"),
    _plasma("EveningGlow"),
    _plasma("Grey"),
    _plasma("summer_1am"),
    Photo("Kleiber", "lomiri-wallpapers-20.04", _LOMIRI / "Kleiber_by_Lukas_Baubkus.jpg", ""),
)

DEBIAN_PACKAGES = sorted({p.package for p in PHOTOS})


def paths() -> list[Path]:
    """The photographs' paths, in ``PHOTOS`` order; MissingSource names the package to install."""
    missing = sorted({p.package for p in PHOTOS if not p.path.is_file()})
    if missing:
        raise MissingSource(
            "real photographs are missing: install the Debian package(s) " + " ".join(missing)
        )
    return [p.path for p in PHOTOS]


@functools.lru_cache(maxsize=8)
def _load(index: int, max_side: int) -> Image.Image:
    paths()
    ph = PHOTOS[index]
    with Image.open(ph.path) as im:
        if max_side:
            # The JPEG decoder's own DCT scaling first (fast), then a high-quality resize.
            im.draft("RGB", (max_side, max_side))
        out = im.convert("RGB")
    if max_side and max(out.size) > max_side:
        out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return out


def photo(index: int, max_side: int = 0) -> Image.Image:
    """Photograph ``index`` (modulo the number of photographs) as an RGB image.

    ``max_side`` > 0 scales it down so that its longer side is at most that
    many pixels (0: full size). The returned image is a copy the caller may
    modify.
    """
    if max_side < 0:
        raise ValueError("max_side must be >= 0")
    return _load(index % len(PHOTOS), int(max_side)).copy()


def crop(im: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A ``size`` (width, height) window of ``im`` at a position drawn by ``rng``."""
    w, h = size
    if w > im.width or h > im.height:
        raise ValueError(f"crop {w}x{h} is larger than the image {im.width}x{im.height}")
    x = int(rng.integers(0, im.width - w + 1))
    y = int(rng.integers(0, im.height - h + 1))
    return im.crop((x, y, x + w, y + h))


def photos(
    rng: np.random.Generator | None = None, n: int | None = None, max_side: int = 0
) -> list[tuple[Photo, Image.Image]]:
    """``n`` photographs (all when None) as ``(Photo, RGB image)`` pairs.

    With ``rng`` they are drawn without replacement in a random order (with
    replacement when ``n`` exceeds the number of photographs); without it they
    come in ``PHOTOS`` order.
    """
    count = len(PHOTOS) if n is None else int(n)
    if count < 0:
        raise ValueError("n must be >= 0")
    if rng is None:
        order = [i % len(PHOTOS) for i in range(count)]
    elif count <= len(PHOTOS):
        order = [int(i) for i in rng.permutation(len(PHOTOS))[:count]]
    else:
        order = [int(i) for i in rng.integers(0, len(PHOTOS), size=count)]
    return [(PHOTOS[i], photo(i, max_side)) for i in order]
