"""The one format module of the three directory kinds llama-compress writes:

  artifact          artifact.json + tensor files + anti_weight/      (compress quantize / sparse)
  packed artifact   the same with a `packing` section and packed weights  (compress pack)
  cut directory     cut.json + rank_0/ ... rank_{N-1}/                (compress cut; units are float HF
                    directories or artifacts)

files.py: checksums, the one manifest writer, tensor files. version.py: the one version check.
manifest.py: the typed manifests. claims.py: manifest claims against the tensors. verify.py: the one
verifier of all three kinds (`compress verify`, and every loader before it reads).
"""
from .files import ST_METADATA, check_files, dump_json, file_table, save_tensors, sha256_file, write_manifest
from .manifest import ARTIFACT, CUT, PACKED, ArtifactManifest, CutManifest, FormatSpec, Producer, producer_version
from .version import check_format

__all__ = ["ST_METADATA", "check_files", "dump_json", "file_table", "save_tensors", "sha256_file", "write_manifest",
           "ARTIFACT", "CUT", "PACKED", "ArtifactManifest", "CutManifest", "FormatSpec", "Producer",
           "producer_version", "check_format"]
