"""Cryptographic building blocks: Paillier keys, fast encryption and slot packing."""
