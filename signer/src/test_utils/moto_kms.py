"""Runs the moto server with KMS Sign/Verify honouring MessageType=DIGEST.

Stock moto ignores MessageType and always hashes the message again, unlike AWS KMS,
which signs a given digest as is. This launcher makes moto's ECDSA keys sign and
verify a DIGEST message without re-hashing (cryptography's Prehashed), then
starts the ordinary moto server with the given arguments. With PERURI_MOTO_STOCK=1
in the environment it starts stock moto instead.
"""

import os
import sys
import threading

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, utils
from moto.kms import responses
from moto.kms import utils as kms_utils
from moto.server import main

_digest = threading.local()


def _with_message_type(original):
    def handler(self):
        _digest.on = self._get_param("MessageType") == "DIGEST"
        try:
            return original(self)
        finally:
            _digest.on = False

    return handler


_sign = kms_utils.ECDSAPrivateKey.sign
_verify = kms_utils.ECDSAPrivateKey.verify


def _prehashed(key, algorithm):
    kms_utils.validate_signing_algorithm(algorithm, key.valid_signing_algorithms)
    return ec.ECDSA(utils.Prehashed(key._ECDSAPrivateKey__hash_algorithm(algorithm)))


def sign(self, message, algorithm):
    if getattr(_digest, "on", False):
        return self.private_key.sign(message, _prehashed(self, algorithm))
    return _sign(self, message, algorithm)


def verify(self, message, signature, algorithm):
    if getattr(_digest, "on", False):
        try:
            self.private_key.public_key().verify(signature, message, _prehashed(self, algorithm))
            return True
        except InvalidSignature:
            return False
    return _verify(self, message, signature, algorithm)


if __name__ == "__main__":
    if os.environ.get("PERURI_MOTO_STOCK") != "1":
        responses.KmsResponse.sign = _with_message_type(responses.KmsResponse.sign)
        responses.KmsResponse.verify = _with_message_type(responses.KmsResponse.verify)
        kms_utils.ECDSAPrivateKey.sign = sign
        kms_utils.ECDSAPrivateKey.verify = verify
    main(sys.argv[1:])
