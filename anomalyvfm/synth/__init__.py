"""Procedural synthetic anomaly data: texture and object families, defect families with exact masks."""
from .defects import DEFECTS, blend
from .generator import SynthConfig, contact_sheet, generate, make_pair, save_whole, to_dataset
from .textures import TEXTURES

__all__ = ["DEFECTS", "TEXTURES", "SynthConfig", "blend", "contact_sheet", "generate", "make_pair", "save_whole",
           "to_dataset"]
