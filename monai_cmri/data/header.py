"""The ISMRMRD XML header of a fastMRI file (SPEC 1.1).

fastMRI stores the ISMRMRD header as XML bytes in the dataset ``ismrmrd_header``. This module
reads the fields the pipeline uses (matrix sizes and fields of view, the phase-encode encoding
limits that mark zero-filled k-space edges, sequence timing, field strength, vendor, receiver
channels) and writes a header of the same shape, which the simulator stores in its files.

The ``ismrmrd`` Python package would parse the full schema, but it is a compiled dependency
for a handful of fields; the standard library's ElementTree reads them directly.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

__all__ = ["ISMRMRD_NS", "EncodingLimit", "IsmrmrdHeader"]

ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"
_NS = {"ns": ISMRMRD_NS}


@dataclass(frozen=True)
class EncodingLimit:
    """One ``encodingLimits`` entry: the acquired index range and the centre index."""

    minimum: int = 0
    maximum: int = 0
    center: int = 0


@dataclass(frozen=True)
class IsmrmrdHeader:
    """The fields of a fastMRI ``ismrmrd_header`` that the pipeline reads.

    Matrix sizes are ``(x, y, z)`` with x the readout (2x oversampled in ``encoded_matrix``)
    and y the phase encode. Fields of view are in millimetres, times in milliseconds.

    Attributes:
        encoded_matrix: encoded-space matrix size ``(x, y, z)``, e.g. ``(640, 320, 1)``.
        encoded_fov_mm: encoded-space field of view ``(x, y, z)`` in mm.
        recon_matrix: reconstruction matrix size ``(x, y, z)``, e.g. ``(320, 320, 1)``.
        recon_fov_mm: reconstruction field of view ``(x, y, z)`` in mm.
        kspace_encoding_step_1: phase-encode lines acquired; lines outside
            ``[minimum, maximum]`` (offset so that ``center`` lands at the k-space centre) are
            zero-filled in the file.
        slice_limit: slice index range.
        tr_ms: repetition time.
        te_ms: echo time.
        ti_ms: inversion time, ``None`` when the sequence has no inversion.
        flip_angle_deg: flip angle in degrees.
        sequence_type: e.g. ``"TurboSpinEcho"``.
        field_strength_t: main field strength in tesla (1.494 on a Siemens "1.5 T" Aera).
        vendor: ``systemVendor``.
        model: ``systemModel``.
        receiver_channels: number of receive channels (coils) in the k-space.
        protocol_name: the scanner protocol name.
        h1_resonance_frequency_hz: proton resonance frequency.
    """

    encoded_matrix: tuple[int, int, int] = (640, 320, 1)
    encoded_fov_mm: tuple[float, float, float] = (440.0, 220.0, 7.5)
    recon_matrix: tuple[int, int, int] = (320, 320, 1)
    recon_fov_mm: tuple[float, float, float] = (220.0, 220.0, 5.0)
    kspace_encoding_step_1: EncodingLimit = field(default_factory=lambda: EncodingLimit(0, 319, 160))
    slice_limit: EncodingLimit = field(default_factory=EncodingLimit)
    tr_ms: float = 0.0
    te_ms: float = 0.0
    ti_ms: float | None = None
    flip_angle_deg: float = 90.0
    sequence_type: str = "TurboSpinEcho"
    field_strength_t: float = 1.5
    vendor: str = ""
    model: str = ""
    receiver_channels: int = 0
    protocol_name: str = ""
    h1_resonance_frequency_hz: int = 0

    def replace(self, **changes) -> IsmrmrdHeader:
        """Return a copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_xml(cls, xml: bytes | str, source: str = "<header>") -> IsmrmrdHeader:
        """Parse an ISMRMRD header.

        Args:
            xml: the header as stored in a fastMRI file's ``ismrmrd_header`` dataset.
            source: a name for error messages, usually the file path.

        Raises:
            ValueError: when the XML does not parse or a required element is missing.
        """
        try:
            root = ET.fromstring(xml)
        except ET.ParseError as err:
            raise ValueError(f"{source}: ismrmrd_header is not valid XML ({err})") from err

        def node(path: str) -> ET.Element:
            found = root.find(_qualify(path), _NS)
            if found is None or found.text is None and len(found) == 0:
                raise ValueError(f"{source}: ismrmrd_header has no <{path}>")
            return found

        def text(path: str) -> str:
            found = node(path)
            return (found.text or "").strip()

        def optional(path: str) -> str | None:
            found = root.find(_qualify(path), _NS)
            return None if found is None or found.text is None else found.text.strip()

        def triple(path: str, kind: type) -> tuple:
            return tuple(kind(float(text(f"{path}/{axis}"))) for axis in ("x", "y", "z"))

        def limit(path: str) -> EncodingLimit:
            return EncodingLimit(*(int(text(f"{path}/{k}")) for k in ("minimum", "maximum", "center")))

        enc = "encoding/encodedSpace"
        rec = "encoding/reconSpace"
        lim = "encoding/encodingLimits"
        ti = optional("sequenceParameters/TI")
        try:
            return cls(
                encoded_matrix=triple(f"{enc}/matrixSize", int),
                encoded_fov_mm=triple(f"{enc}/fieldOfView_mm", float),
                recon_matrix=triple(f"{rec}/matrixSize", int),
                recon_fov_mm=triple(f"{rec}/fieldOfView_mm", float),
                kspace_encoding_step_1=limit(f"{lim}/kspace_encoding_step_1"),
                slice_limit=limit(f"{lim}/slice") if optional(f"{lim}/slice/maximum") else EncodingLimit(),
                tr_ms=float(text("sequenceParameters/TR")),
                te_ms=float(text("sequenceParameters/TE")),
                ti_ms=float(ti) if ti else None,
                flip_angle_deg=float(optional("sequenceParameters/flipAngle_deg") or 90.0),
                sequence_type=optional("sequenceParameters/sequence_type") or "",
                field_strength_t=float(text("acquisitionSystemInformation/systemFieldStrength_T")),
                vendor=optional("acquisitionSystemInformation/systemVendor") or "",
                model=optional("acquisitionSystemInformation/systemModel") or "",
                receiver_channels=int(optional("acquisitionSystemInformation/receiverChannels") or 0),
                protocol_name=optional("measurementInformation/protocolName") or "",
                h1_resonance_frequency_hz=int(
                    float(optional("experimentalConditions/H1resonanceFrequency_Hz") or 0)
                ),
            )
        except (TypeError, ValueError) as err:
            if str(err).startswith(source):
                raise
            raise ValueError(f"{source}: ismrmrd_header has a malformed value ({err})") from err

    def to_xml(self) -> bytes:
        """Write the header as ISMRMRD XML bytes, in the element order fastMRI files use."""
        ET.register_namespace("", ISMRMRD_NS)
        root = ET.Element(f"{{{ISMRMRD_NS}}}ismrmrdHeader")

        def sub(parent: ET.Element, tag: str, value: object = None) -> ET.Element:
            child = ET.SubElement(parent, f"{{{ISMRMRD_NS}}}{tag}")
            if value is not None:
                child.text = _fmt(value)
            return child

        measurement = sub(root, "measurementInformation")
        sub(measurement, "patientPosition", "HFS")
        sub(measurement, "protocolName", self.protocol_name)
        system = sub(root, "acquisitionSystemInformation")
        sub(system, "systemVendor", self.vendor)
        sub(system, "systemModel", self.model)
        sub(system, "systemFieldStrength_T", self.field_strength_t)
        sub(system, "receiverChannels", self.receiver_channels)
        conditions = sub(root, "experimentalConditions")
        sub(conditions, "H1resonanceFrequency_Hz", self.h1_resonance_frequency_hz)
        encoding = sub(root, "encoding")
        for tag, matrix, fov in (
            ("encodedSpace", self.encoded_matrix, self.encoded_fov_mm),
            ("reconSpace", self.recon_matrix, self.recon_fov_mm),
        ):
            space = sub(encoding, tag)
            for name, values in (("matrixSize", matrix), ("fieldOfView_mm", fov)):
                element = sub(space, name)
                for axis, value in zip(("x", "y", "z"), values):
                    sub(element, axis, value)
        sub(encoding, "trajectory", "cartesian")
        limits = sub(encoding, "encodingLimits")
        zero = EncodingLimit()
        for name, value in (
            ("kspace_encoding_step_1", self.kspace_encoding_step_1),
            ("kspace_encoding_step_2", zero),
            ("average", zero),
            ("slice", self.slice_limit),
            ("contrast", zero),
            ("phase", zero),
            ("repetition", zero),
            ("set", zero),
            ("segment", zero),
        ):
            element = sub(limits, name)
            sub(element, "minimum", value.minimum)
            sub(element, "maximum", value.maximum)
            sub(element, "center", value.center)
        sequence = sub(root, "sequenceParameters")
        sub(sequence, "TR", self.tr_ms)
        sub(sequence, "TE", self.te_ms)
        if self.ti_ms is not None:
            sub(sequence, "TI", self.ti_ms)
        sub(sequence, "flipAngle_deg", self.flip_angle_deg)
        sub(sequence, "sequence_type", self.sequence_type)
        ET.indent(root, space="   ")
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _qualify(path: str) -> str:
    return "/".join(f"ns:{part}" for part in path.split("/"))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)
