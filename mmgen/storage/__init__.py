"""Files that are never half-written and never unpickled: atomic writes and safetensors I/O.

Owns how mmgen puts bytes on disk; knows nothing of models or runs. May import: mmgen.errors.
"""

from mmgen.storage.atomic import atomic_write_bytes, atomic_write_text
from mmgen.storage.tensors import load_tensors, read_header, read_metadata, save_tensors

__all__ = ["atomic_write_bytes", "atomic_write_text", "load_tensors", "read_header", "read_metadata", "save_tensors"]
