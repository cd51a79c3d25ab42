"""Scene data: one schema, procedural generators, readers of published releases, storage."""
from common.data.registry import GENERATORS, generate_dataset, generate_split
from common.data.schema import FactorSpec, SceneMeta
from common.data.store import DatasetError, load_meta, load_split, load_tensors, save_dataset

__all__ = ["GENERATORS", "generate_dataset", "generate_split", "FactorSpec", "SceneMeta", "DatasetError",
           "load_meta", "load_split", "load_tensors", "save_dataset"]
