"""The stock ExampleGen's hash split, applied to serialized examples.

TFX's `base_example_gen_executor._PartitionFn` hashes each record with SHA-256
(a tf.Example by its deterministic serialization, bytes as they are) and maps
the hash modulo the total bucket count to the split whose cumulative buckets
first exceed it. Given the deterministic bytes, this is the same function, so
a row lands in the split the stock executor would put it in.
"""

import bisect
import hashlib
from typing import List

from tfx.proto import example_gen_pb2


class SplitConfigError(ValueError):
    """An output split configuration this executor cannot reproduce."""


def cumulative_buckets(split_config: example_gen_pb2.SplitConfig) -> List[int]:
    """[b1, b1+b2, ...]: the upper bucket bound of each split, in split order."""
    if split_config.partition_feature_name:
        raise SplitConfigError(
            f"split_config.partition_feature_name={split_config.partition_feature_name!r} is not "
            "supported by the emulator ExampleGen executor; split by hash of the whole example "
            "(leave partition_feature_name empty)"
        )
    bounds, total = [], 0
    for split in split_config.splits:
        if split.hash_buckets <= 0:
            raise SplitConfigError(
                f"split {split.name!r} has hash_buckets={split.hash_buckets}; give it at least 1"
            )
        total += split.hash_buckets
        bounds.append(total)
    return bounds


def split_index(serialized_example: bytes, buckets: List[int]) -> int:
    """Index of the split a deterministically serialized example belongs to."""
    digest = int.from_bytes(hashlib.sha256(serialized_example).digest(), "big")
    return bisect.bisect(buckets, digest % buckets[-1])
