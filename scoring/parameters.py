"""CKKS parameter sets: what the service serves, named and compared exactly.

Pure data (no SEAL import), so that the wire format and the model description can name
parameters without loading the encryption library.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CkksParameters:
    """A CKKS parameter set the service can serve.

    Attributes:
        poly_modulus_degree: the ring degree N.
        coeff_modulus: the prime moduli, exactly.
    """

    poly_modulus_degree: int
    coeff_modulus: tuple[int, ...]

    @property
    def name(self) -> str:
        bits = "-".join(str(q.bit_length()) for q in self.coeff_modulus)
        return f"ckks-n{self.poly_modulus_degree}-q{bits}"

    def to_dict(self) -> dict:
        return {
            "scheme": "ckks",
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_modulus": [str(q) for q in self.coeff_modulus],
            "coeff_modulus_bits": [q.bit_length() for q in self.coeff_modulus],
            "security_level": 128,
        }

    @classmethod
    def from_dict(cls, data: dict) -> CkksParameters:
        """The parameters a model description names.

        Raises:
            ValueError: if the fields are missing or not integers.
        """
        return cls(int(data["poly_modulus_degree"]), tuple(int(q) for q in data["coeff_modulus"]))


# N = 8192 with one 60-bit prime (2^60 - 2^14 + 1): SEAL's 128-bit check allows up to 218
# bits here, and a single prime needs no key switching, no rescale and no Galois keys
# (kernels.md).
DEFAULT_PARAMETERS = CkksParameters(8192, (1152921504606830593,))
SERVED_PARAMETERS = (DEFAULT_PARAMETERS,)
